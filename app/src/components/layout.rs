//! The frame of every signed-in page: navigation by role, who is signed in,
//! sign-out. Pages inside it find the signed-in user with `use_context::<Me>()`.

use crate::api::delegations::count_approvals;
use crate::api::session::{current_user, SignOut};
use crate::api::{Me, Role};
use leptos::prelude::*;
use leptos_router::components::{Outlet, Redirect, A};
use leptos_router::hooks::use_location;
use serde::{Deserialize, Serialize};

/// Who is signed in, as known when the frame is made.
#[derive(Clone, Serialize, Deserialize)]
enum Known {
    In(Me),
    Out,
    /// Not known yet: asked of the server (a page reached by navigating in
    /// the browser).
    Unknown,
}

#[component]
pub fn Layout() -> impl IntoView {
    // The server looks the caller up before rendering a page, and the
    // browser takes its answer over while hydrating: a page's own resources
    // are then made at the top of the render, never inside a `<Suspense>`
    // that is resolving (a pattern whose streamed responses could stall).
    match SharedValue::new(known_on_server).into_inner() {
        Known::In(me) => view! { <Frame me/> }.into_any(),
        Known::Out => view! { <ToSignIn/> }.into_any(),
        Known::Unknown => view! { <AskWhoIsIn/> }.into_any(),
    }
}

#[cfg(feature = "ssr")]
fn known_on_server() -> Known {
    use_context::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<crate::api::SignedIn>().cloned())
        .map_or(Known::Unknown, |s| s.0.map_or(Known::Out, Known::In))
}

#[cfg(not(feature = "ssr"))]
fn known_on_server() -> Known {
    Known::Unknown
}

/// The frame once the server has said who is signed in.
#[component]
fn AskWhoIsIn() -> impl IntoView {
    let me = Resource::new(|| (), |_| current_user());
    view! {
        <Suspense fallback=|| view! { <p class="p-8 text-slate-500">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match me.await {
                    Ok(Some(me)) => view! { <Frame me/> }.into_any(),
                    Ok(None) | Err(_) => view! { <ToSignIn/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// To the sign-in page, coming back here afterwards.
#[component]
fn ToSignIn() -> impl IntoView {
    let next = use_location().pathname.get_untracked();
    let path = format!("/sign-in?next={}", urlencode(&next));
    view! { <Redirect path/> }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[component]
fn Frame(me: Me) -> impl IntoView {
    provide_context(me.clone());
    let sign_out = ServerAction::<SignOut>::new();
    // Each link shows for holders of any of its roles.
    let links: Vec<(&str, &str)> = [
        (&[Role::Viewer][..], "/devices", "Devices"),
        (&Role::ALL[..], "/delegations", "Delegations"),
        (&[Role::Viewer, Role::Admin][..], "/peers", "Peers"),
        (&[Role::Admin][..], "/users", "Users"),
        (&[Role::Auditor][..], "/audit", "Audit"),
    ]
    .into_iter()
    .filter(|(roles, _, _)| roles.iter().any(|r| me.has(*r)))
    .map(|(_, href, label)| (href, label))
    .collect();
    let roles = me
        .roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    view! {
        <div class="min-h-screen">
            <header class="border-b border-slate-200 bg-white">
                <div class="mx-auto flex max-w-7xl items-center gap-8 px-6 py-3">
                    <A href="/" attr:class="flex items-center gap-2 font-semibold text-slate-900">
                        <span class="inline-block h-6 w-6 rounded bg-indigo-600" aria-hidden="true"></span>
                        "Handover"
                    </A>
                    <nav aria-label="Main" class="flex gap-1 text-sm">
                        {links
                            .into_iter()
                            .map(|(href, label)| {
                                view! {
                                    <A href=href attr:class="rounded-md px-3 py-2 text-slate-600 hover:bg-slate-100 hover:text-slate-900 aria-[current=page]:bg-slate-100 aria-[current=page]:font-medium aria-[current=page]:text-slate-900">
                                        {label}
                                    </A>
                                }
                            })
                            .collect_view()}
                        <ApprovalsLink/>
                    </nav>
                    <div class="ml-auto flex items-center gap-4 text-sm">
                        <span class="text-slate-500" title=format!("Roles: {roles}")>
                            <span class="font-medium text-slate-800">{me.name.clone()}</span>
                            " · "
                            {me.server_id.clone()}
                        </span>
                        <ActionForm action=sign_out>
                            <button type="submit" class="rounded-md border border-slate-300 px-3 py-1.5 text-slate-700 hover:bg-slate-50">
                                "Sign out"
                            </button>
                        </ActionForm>
                    </div>
                </div>
            </header>
            <main class="mx-auto max-w-7xl px-6 py-8">
                <Outlet/>
            </main>
        </div>
    }
}

/// The Approvals link, with how many requests wait for a decision.
#[component]
fn ApprovalsLink() -> impl IntoView {
    let location = use_location();
    let waiting = Resource::new(move || location.pathname.get(), |_| count_approvals());
    view! {
        <A href="/approvals" attr:class="rounded-md px-3 py-2 text-slate-600 hover:bg-slate-100 hover:text-slate-900 aria-[current=page]:bg-slate-100 aria-[current=page]:font-medium aria-[current=page]:text-slate-900">
            "Approvals"
            <Transition>
                {move || Suspend::new(async move {
                    waiting.await.ok().filter(|n| *n > 0).map(|n| view! {
                        <span class="ml-1.5 rounded-full bg-indigo-600 px-1.5 py-0.5 text-xs font-medium text-white">
                            {n}<span class="sr-only">" waiting"</span>
                        </span>
                    })
                })}
            </Transition>
        </A>
    }
}
