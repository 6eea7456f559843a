use crate::api::delegations::new_request_href;
use crate::api::devices::{
    device_href, list_device_facets, list_devices, DevicePage, DeviceQuery, DeviceRow,
    DeviceSelection, DeviceSort,
};
use crate::api::{Me, Role};
use crate::components::ui::{ErrorNotice, PageHeader, Pager, SortHeader, Time};
use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_query_map;

const FIELD: &str = "mt-1 block w-full rounded-md border border-slate-300 bg-white px-3 py-2 text-sm focus:border-indigo-500 focus:outline-none focus:ring-1 focus:ring-indigo-500";
const BUTTON_QUIET: &str = "rounded-md border border-slate-300 bg-white px-3 py-1.5 text-sm text-slate-700 hover:bg-slate-50";

/// The device inventory (viewer): search, filter, sort, page, select.
///
/// Everything that decides the rows is in the URL (a GET form, so it works
/// before hydration); the selection is a signal that outlives paging and
/// filtering, ready for the delegation request to take.
#[component]
pub fn Devices() -> impl IntoView {
    let query_map = use_query_map();
    let query = Memo::new(move |_| {
        let q = query_map.read();
        DeviceQuery::from_pairs(|k| q.get(k))
    });
    let page = Resource::new(move || query.get(), list_devices);
    let facets = Resource::new(|| (), |_| list_device_facets());
    let selection = RwSignal::new(DeviceSelection::default());

    view! {
        <leptos_meta::Title text="Devices"/>
        <PageHeader title="Devices" subtitle="Every device this authority provisioned, as last seen over OMA DM."/>
        <FilterForm query facets/>
        <SelectionBar selection/>
        <Suspense fallback=|| view! { <p class="text-sm text-slate-500">"Loading devices…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(p) if p.rows.is_empty() => {
                        view! { <EmptyState query=query.get_untracked() page=p/> }.into_any()
                    }
                    Ok(p) => view! { <DeviceTable query=query.get_untracked() page=p selection/> }.into_any(),
                    Err(e) => view! { <ErrorNotice error=Signal::derive(move || Some(e.clone()))/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn FilterForm(
    query: Memo<DeviceQuery>,
    facets: Resource<Result<crate::api::devices::DeviceFacets, crate::api::AppError>>,
) -> impl IntoView {
    let select = move |id: &'static str, name: &'static str, label: &'static str| {
        view! {
            <div>
                <label for=id class="block text-sm font-medium text-slate-700">{label}</label>
                <select id=id name=name class=FIELD>
                    <option value="">"Any"</option>
                    <Suspense>
                        {move || Suspend::new(async move {
                            let current = query.with_untracked(|q| match name {
                                "man" => q.man.clone(),
                                "model" => q.model.clone(),
                                "authority" => q.authority.clone(),
                                _ => q.state.clone(),
                            });
                            let f = facets.await.unwrap_or_default();
                            let values = match name {
                                "man" => f.man,
                                "model" => f.model,
                                "authority" => f.authority,
                                _ => f.state,
                            };
                            let mut values = values;
                            // A value from the URL stays selectable even when no device has it.
                            if !current.is_empty() && !values.contains(&current) {
                                values.insert(0, current.clone());
                            }
                            values
                                .into_iter()
                                .map(|v| {
                                    let selected = v == current;
                                    view! { <option value=v.clone() selected=selected>{v.clone()}</option> }
                                })
                                .collect_view()
                        })}
                    </Suspense>
                </select>
            </div>
        }
    };
    let q_value = move || query.with(|q| q.q.clone());
    view! {
        <form method="get" action="/devices" role="search" aria-label="Search and filter devices"
            class="mb-4 grid gap-4 rounded-lg border border-slate-200 bg-white p-4 shadow-sm sm:grid-cols-2 lg:grid-cols-8">
            <div class="lg:col-span-2">
                <label for="f-q" class="block text-sm font-medium text-slate-700">"DevId"</label>
                <input id="f-q" name="q" type="search" maxlength="255" placeholder="e.g. IMEI:4901 or 2375"
                    prop:value=q_value class=FIELD/>
            </div>
            {select("f-man", "man", "Manufacturer")}
            {select("f-model", "model", "Model")}
            {select("f-authority", "authority", "Authority")}
            {select("f-state", "state", "State")}
            <div>
                <label for="f-sort" class="block text-sm font-medium text-slate-700">"Sort by"</label>
                <select id="f-sort" name="sort" class=FIELD>
                    {DeviceSort::ALL
                        .into_iter()
                        .map(|s| {
                            view! {
                                <option value=s.as_str() selected=move || query.with(|q| q.sort == s)>{s.label()}</option>
                            }
                        })
                        .collect_view()}
                </select>
            </div>
            <div>
                <label for="f-dir" class="block text-sm font-medium text-slate-700">"Order"</label>
                <select id="f-dir" name="dir" class=FIELD>
                    <option value="asc" selected=move || query.with(|q| !q.desc)>"Ascending"</option>
                    <option value="desc" selected=move || query.with(|q| q.desc)>"Descending"</option>
                </select>
            </div>
            <div class="flex items-end gap-2 lg:col-span-8">
                <button type="submit" class="rounded-md bg-slate-800 px-3 py-2 text-sm font-medium text-white hover:bg-slate-700">"Search"</button>
                <A href="/devices" attr:class="px-2 py-2 text-sm text-slate-600 hover:text-slate-900">"Clear filters"</A>
            </div>
        </form>
    }
}

/// "N selected" with a way to clear it; shown only while something is selected.
#[component]
fn SelectionBar(selection: RwSignal<DeviceSelection>) -> impl IntoView {
    let operator = use_context::<Me>().is_some_and(|m| m.has(Role::Operator));
    let text = move || {
        selection.with(|s| match s {
            DeviceSelection::Devids(d) if d.len() == 1 => "1 device selected".to_owned(),
            DeviceSelection::Devids(d) => format!("{} devices selected", d.len()),
            DeviceSelection::Query(q) if !q.is_filtered() => "All devices selected".to_owned(),
            DeviceSelection::Query(_) => "All devices matching the search selected".to_owned(),
        })
    };
    view! {
        <Show when=move || !selection.with(|s| s.is_empty())>
            <div role="status" aria-label="Selection"
                class="mb-4 flex items-center gap-4 rounded-md border border-indigo-200 bg-indigo-50 px-4 py-2 text-sm text-indigo-900">
                <span class="font-medium">{text}</span>
                <button type="button" class=BUTTON_QUIET on:click=move |_| selection.set(DeviceSelection::default())>
                    "Clear selection"
                </button>
                <Show when=move || operator>
                    <A href=move || selection.with(new_request_href)
                        attr:class="ml-auto rounded-md bg-indigo-600 px-3 py-1.5 text-sm font-medium text-white hover:bg-indigo-500">
                        "Request delegation"
                    </A>
                </Show>
            </div>
        </Show>
    }
}

#[component]
fn EmptyState(query: DeviceQuery, page: DevicePage) -> impl IntoView {
    let text = if query.is_filtered() && page.total > 0 {
        // Filters match, but the page is past the end.
        view! {
            "This page is past the last one. "
            <A href=query.with_page(1).href() attr:class="font-medium text-indigo-700 underline">"Go to the first page"</A>
            "."
        }
        .into_any()
    } else if query.is_filtered() || page.total > 0 {
        view! {
            "No device matches this search. "
            <A href="/devices" attr:class="font-medium text-indigo-700 underline">"Clear the filters"</A>
            " to see all devices."
        }
        .into_any()
    } else {
        view! {
            "No devices yet. Import them with "
            <code class="rounded bg-slate-100 px-1 font-mono text-slate-700">"handover admin devices import FILE.csv"</code>
            ", or start the simulator with "
            <code class="rounded bg-slate-100 px-1 font-mono text-slate-700">"handover sim"</code>
            "."
        }
        .into_any()
    };
    view! {
        <p class="rounded-lg border border-dashed border-slate-300 bg-white p-6 text-sm text-slate-500">{text}</p>
    }
}

fn count_text(p: &DevicePage) -> String {
    match (p.more, p.total) {
        (true, n) => format!("More than {} devices", group(n)),
        (false, 1) => "1 device".to_owned(),
        (false, n) => format!("{} devices", group(n)),
    }
}

/// 12345 → "12 345".
fn group(n: i64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

#[component]
fn DeviceTable(
    query: DeviceQuery,
    page: DevicePage,
    selection: RwSignal<DeviceSelection>,
) -> impl IntoView {
    let devids: Vec<String> = page.rows.iter().map(|r| r.devid.clone()).collect();
    let all_on_page = {
        let devids = devids.clone();
        move || selection.with(|s| devids.iter().all(|d| s.contains(d)))
    };
    let whole_query = move || selection.with(|s| matches!(s, DeviceSelection::Query(_)));
    let toggle_page = {
        let devids = devids.clone();
        move |on: bool| {
            selection.update(|s| {
                for d in &devids {
                    s.toggle(d, on);
                }
            })
        }
    };
    let matching = query.matching_only();
    let select_all_text = if page.more {
        format!("Select all {}+ matching", group(page.total))
    } else {
        format!("Select all {} matching", group(page.total))
    };
    let pages = page.pages();
    let prev = (page.page > 1).then(|| query.with_page(page.page - 1).href());
    let next = (page.page < pages || (page.more && page.rows.len() as i64 == page.page_size))
        .then(|| query.with_page(page.page + 1).href());
    let page_text = if page.more {
        format!("Page {} of more than {}", page.page, group(pages))
    } else {
        format!("Page {} of {}", page.page, group(pages))
    };
    let header = {
        let query = query.clone();
        move |sort: DeviceSort| {
            let active = query.sort == sort;
            let next_desc = active && !query.desc;
            let href = DeviceQuery {
                sort,
                desc: next_desc,
                page: 1,
                ..query.clone()
            }
            .href();
            view! { <SortHeader label=sort.label() href order=active.then_some(query.desc)/> }
        }
    };
    view! {
        <div class="mb-2 flex flex-wrap items-center gap-4 text-sm text-slate-500">
            <p>{count_text(&page)}</p>
            <button type="button" class=BUTTON_QUIET
                on:click=move |_| selection.set(DeviceSelection::Query(matching.clone()))>
                {select_all_text}
            </button>
        </div>
        <div class="overflow-x-auto rounded-lg border border-slate-200 bg-white shadow-sm">
            <table class="min-w-full divide-y divide-slate-200 text-sm">
                <caption class="sr-only">"Devices"</caption>
                <thead class="bg-slate-50 text-left text-xs font-semibold uppercase tracking-wide text-slate-500">
                    <tr>
                        <th scope="col" class="w-10 px-4 py-3">
                            <input type="checkbox" aria-label="Select all devices on this page"
                                class="h-4 w-4 rounded border-slate-300"
                                prop:checked=all_on_page disabled=whole_query
                                on:change=move |ev| toggle_page(event_target_checked(&ev))/>
                        </th>
                        {header(DeviceSort::Devid)}
                        {header(DeviceSort::Man)}
                        {header(DeviceSort::Model)}
                        <th scope="col" class="px-4 py-3">"Authority"</th>
                        <th scope="col" class="px-4 py-3">"State"</th>
                        {header(DeviceSort::LastSeen)}
                    </tr>
                </thead>
                <tbody class="divide-y divide-slate-100">
                    {page.rows.into_iter().map(|r| view! { <Row row=r selection/> }).collect_view()}
                </tbody>
            </table>
        </div>
        <Pager prev next text=page_text/>
    }
}

#[component]
fn Row(row: DeviceRow, selection: RwSignal<DeviceSelection>) -> impl IntoView {
    let devid = row.devid.clone();
    let checked = {
        let devid = devid.clone();
        move || selection.with(|s| s.contains(&devid))
    };
    let whole_query = move || selection.with(|s| matches!(s, DeviceSelection::Query(_)));
    let toggle = {
        let devid = devid.clone();
        move |ev| {
            let on = event_target_checked(&ev);
            selection.update(|s| s.toggle(&devid, on));
        }
    };
    view! {
        <tr class="hover:bg-slate-50">
            <td class="px-4 py-2">
                <input type="checkbox" aria-label=format!("Select {devid}") class="h-4 w-4 rounded border-slate-300"
                    prop:checked=checked disabled=whole_query on:change=toggle/>
            </td>
            <td class="whitespace-nowrap px-4 py-2 font-mono text-xs">
                <A href=device_href(&row.devid) attr:class="text-indigo-700 hover:underline">{row.devid.clone()}</A>
            </td>
            <td class="px-4 py-2">{row.man}</td>
            <td class="px-4 py-2">{row.model}</td>
            <td class="px-4 py-2 font-mono text-xs">{row.authority}</td>
            <td class="px-4 py-2"><StateBadge state=row.state/></td>
            <td class="whitespace-nowrap px-4 py-2">
                {match row.last_seen {
                    Some(ms) => view! { <Time ms/> }.into_any(),
                    None => view! { <span class="text-slate-400">"never"</span> }.into_any(),
                }}
            </td>
        </tr>
    }
}

/// A device's state as a coloured label.
#[component]
pub fn StateBadge(state: String) -> impl IntoView {
    let class = match state.as_str() {
        "active" => "bg-emerald-50 text-emerald-800 ring-emerald-200",
        "handed-over" => "bg-amber-50 text-amber-800 ring-amber-200",
        _ => "bg-slate-100 text-slate-700 ring-slate-200",
    };
    view! {
        <span class=format!("inline-flex rounded-full px-2 py-0.5 text-xs font-medium ring-1 ring-inset {class}")>{state}</span>
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_are_grouped() {
        assert_eq!(super::group(7), "7");
        assert_eq!(super::group(100_000), "100\u{202f}000");
        assert_eq!(super::group(1_234_567), "1\u{202f}234\u{202f}567");
    }
}
