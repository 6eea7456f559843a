//! `/delegations`: every delegation of this server, filtered by state,
//! device, peer and batch, sorted by any column and paged (everyone with a
//! role).

use crate::api::delegations::{
    delegation_href, list_delegations, state_words, DelegationFilter, DelegationPage,
    DelegationSort, STATES,
};
use crate::components::ui::{ErrorNotice, PageHeader, Pager, SortHeader, Time};
use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_query_map;

const FIELD: &str = "mt-1 block w-full rounded-md border border-slate-300 bg-white px-3 py-2 text-sm focus:border-indigo-500 focus:outline-none focus:ring-1 focus:ring-indigo-500";
const LABEL: &str = "block text-sm font-medium text-slate-700";

#[component]
pub fn Delegations() -> impl IntoView {
    let query = use_query_map();
    let filter = Memo::new(move |_| {
        let q = query.read();
        DelegationFilter::from_pairs(|k| q.get(k))
    });
    let rows = Resource::new(move || filter.get(), list_delegations);
    let subtitle = move || {
        let b = filter.with(|f| f.batch.clone());
        if b.is_empty() {
            "Every delegation of this server.".to_owned()
        } else {
            format!("Batch {b}: one delegation per device.")
        }
    };
    view! {
        <leptos_meta::Title text="Delegations"/>
        <PageHeader title="Delegations"/>
        <p class="-mt-4 mb-6 text-sm text-slate-500">{subtitle}</p>
        <FilterForm filter/>
        <Suspense fallback=|| view! { <p class="text-sm text-slate-500">"Loading delegations…"</p> }>
            {move || Suspend::new(async move {
                match rows.await {
                    Ok(r) if r.rows.is_empty() => view! {
                        <p class="rounded-lg border border-dashed border-slate-300 bg-white p-6 text-sm text-slate-500">
                            "No delegation matches. Request one from the "
                            <A href="/devices" attr:class="font-medium text-indigo-700 underline">"Devices"</A>" page."
                        </p>
                    }.into_any(),
                    Ok(r) => view! { <Table page=r filter=filter.get_untracked()/> }.into_any(),
                    Err(e) => view! { <ErrorNotice error=Signal::derive(move || Some(e.clone()))/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn FilterForm(filter: Memo<DelegationFilter>) -> impl IntoView {
    let state = move || filter.with(|f| f.state.clone());
    let option = move |value: &'static str, label: &'static str| {
        view! { <option value=value selected=move || state() == value>{label}</option> }
    };
    view! {
        <form method="get" action="/delegations" role="search" aria-label="Filter delegations"
            class="mb-4 grid gap-4 rounded-lg border border-slate-200 bg-white p-4 shadow-sm sm:grid-cols-2 lg:grid-cols-5">
            <div>
                <label for="d-state" class=LABEL>"State"</label>
                <select id="d-state" name="state" class=FIELD>
                    {option("", "Any")}
                    {option("open", "Open")}
                    {option("ended", "Ended")}
                    <optgroup label="One state">
                        {STATES.into_iter().map(|s| option(s, state_words(s))).collect_view()}
                    </optgroup>
                </select>
            </div>
            <div>
                <label for="d-device" class=LABEL>"Device"</label>
                <input id="d-device" name="device" type="search" maxlength="255" placeholder="DevId"
                    prop:value=move || filter.with(|f| f.device.clone()) class=FIELD/>
            </div>
            <div>
                <label for="d-peer" class=LABEL>"Peer"</label>
                <input id="d-peer" name="peer" type="search" maxlength="255" placeholder="ServerID"
                    prop:value=move || filter.with(|f| f.peer.clone()) class=FIELD/>
            </div>
            <div>
                <label for="d-batch" class=LABEL>"Batch"</label>
                <input id="d-batch" name="batch" type="search" inputmode="numeric" maxlength="20"
                    prop:value=move || filter.with(|f| f.batch.clone()) class=FIELD/>
            </div>
            // A new filter keeps the order and starts from the first page.
            {move || {
                let f = filter.get();
                let desc = f.descending();
                let dir = (desc != f.sort.natural_desc()).then_some(if desc { "desc" } else { "asc" });
                view! {
                    {(f.sort != DelegationSort::default()).then(|| view! { <input type="hidden" name="sort" value=f.sort.as_str()/> })}
                    {dir.map(|d| view! { <input type="hidden" name="dir" value=d/> })}
                }
            }}
            <div class="flex items-end gap-2">
                <button type="submit" class="rounded-md bg-slate-800 px-3 py-2 text-sm font-medium text-white hover:bg-slate-700">"Filter"</button>
                <A href="/delegations" attr:class="px-2 py-2 text-sm text-slate-600 hover:text-slate-900">"Clear"</A>
            </div>
        </form>
    }
}

/// "Permanent", or "until" and the time.
#[component]
pub fn TermText(term: String, expires_at: Option<i64>) -> impl IntoView {
    match (term.as_str(), expires_at) {
        ("temporary", Some(ms)) => view! { "until " <Time ms/> }.into_any(),
        ("temporary", None) => view! { "temporary" }.into_any(),
        _ => view! { "permanent" }.into_any(),
    }
}

/// A state in plain words, coloured by how it stands.
#[component]
pub fn StateText(state: String, outcome: String) -> impl IntoView {
    let class = match (state.as_str(), outcome.as_str()) {
        ("Completed", "") => "bg-emerald-50 text-emerald-800 ring-emerald-200",
        (_, "") if state.starts_with("Awaiting") => "bg-amber-50 text-amber-800 ring-amber-200",
        (_, "") => "bg-indigo-50 text-indigo-800 ring-indigo-200",
        _ => "bg-slate-100 text-slate-700 ring-slate-200",
    };
    view! {
        <span title=state.clone()
            class=format!("inline-flex whitespace-nowrap rounded-full px-2 py-0.5 text-xs font-medium ring-1 ring-inset {class}")>
            {state_words(&state)}
        </span>
    }
}

#[component]
fn Table(page: DelegationPage, filter: DelegationFilter) -> impl IntoView {
    let count = match page.total {
        1 => "1 delegation".to_owned(),
        n => format!("{n} delegations"),
    };
    let pages = page.pages();
    let prev = (page.page > 1).then(|| filter.with_page(page.page - 1).href());
    let next = (page.page < pages).then(|| filter.with_page(page.page + 1).href());
    let header = {
        let filter = filter.clone();
        move |sort: DelegationSort| {
            let active = filter.sort == sort;
            let desc = if active {
                !filter.descending()
            } else {
                sort.natural_desc()
            };
            let href = filter.sorted_by(sort, desc).href();
            let order = active.then(|| filter.descending());
            view! { <SortHeader label=sort.label() href order/> }
        }
    };
    view! {
        <p class="mb-2 text-sm text-slate-500">{count}</p>
        <div class="overflow-x-auto rounded-lg border border-slate-200 bg-white shadow-sm">
            <table class="min-w-full divide-y divide-slate-200 text-sm">
                <caption class="sr-only">"Delegations"</caption>
                <thead class="bg-slate-50 text-left text-xs font-semibold uppercase tracking-wide text-slate-500">
                    <tr>
                        {header(DelegationSort::Device)}
                        {header(DelegationSort::Peer)}
                        <th scope="col" class="px-4 py-3">"Our role"</th>
                        <th scope="col" class="px-4 py-3">"Type"</th>
                        <th scope="col" class="px-4 py-3">"Term"</th>
                        {header(DelegationSort::State)}
                        {header(DelegationSort::Started)}
                        <th scope="col" class="px-4 py-3">"Requested by"</th>
                    </tr>
                </thead>
                <tbody class="divide-y divide-slate-100">
                    {page.rows.into_iter().map(|r| {
                        let role = r.role_words();
                        view! {
                            <tr class="hover:bg-slate-50">
                                <td class="whitespace-nowrap px-4 py-2 font-mono text-xs">
                                    <A href=delegation_href(r.id) attr:class="text-indigo-700 hover:underline">{r.devid.clone()}</A>
                                </td>
                                <td class="px-4 py-2 font-mono text-xs">{r.peer.clone()}</td>
                                <td class="px-4 py-2">{role}</td>
                                <td class="px-4 py-2">{r.kind.clone()}</td>
                                <td class="whitespace-nowrap px-4 py-2"><TermText term=r.term.clone() expires_at=r.expires_at/></td>
                                <td class="px-4 py-2"><StateText state=r.state.clone() outcome=r.outcome.clone()/></td>
                                <td class="whitespace-nowrap px-4 py-2"><Time ms=r.created_at/></td>
                                <td class="px-4 py-2">{if r.requested_by.is_empty() { "—".to_owned() } else { r.requested_by.clone() }}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </div>
        <Pager prev next text=format!("Page {} of {pages}", page.page)/>
    }
}
