//! The document shell and the routes.

use crate::components::layout::Layout;
use crate::pages;
use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{ParentRoute, Route, Router, Routes};
use leptos_router::{path, SsrMode};

/// The HTML document around every page.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body class="bg-slate-50 text-slate-900 antialiased">
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="leptos" href="/pkg/handover.css"/>
        <Title formatter=|text: String| if text.is_empty() { "Handover".to_owned() } else { format!("{text} · Handover") }/>
        <Router>
            <Routes fallback=|| view! { <pages::not_found::NotFound/> }>
                <Route path=path!("/sign-in") view=pages::sign_in::SignIn ssr=SsrMode::Async/>
                <Route path=path!("/setup") view=pages::setup::Setup ssr=SsrMode::Async/>
                <ParentRoute path=path!("") view=Layout ssr=SsrMode::Async>
                    <Route path=path!("/") view=pages::home::Home/>
                    <Route path=path!("/devices") view=pages::devices::Devices/>
                    <Route path=path!("/devices/:devid") view=pages::device::Device/>
                    <Route path=path!("/peers") view=pages::peers::Peers/>
                    <Route path=path!("/users") view=pages::users::Users/>
                    <Route path=path!("/audit") view=pages::audit::Audit/>
                    <Route path=path!("/delegations") view=pages::delegations::Delegations/>
                    <Route path=path!("/delegations/new") view=pages::request::NewRequest/>
                    <Route path=path!("/approvals") view=pages::approvals::Approvals/>
                    <Route path=path!("/delegations/:id") view=pages::delegation::Delegation/>
                    <Route path=path!("/batches/:id") view=pages::batch::Batch/>
                </ParentRoute>
            </Routes>
        </Router>
    }
}
