use crate::api::audit::{audit_event_kinds, list_audit, AuditFilter, VerifyAudit};
use crate::components::ui::{ErrorNotice, PageHeader, Time};
use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_query_map;

/// The query parameters the filter form and the export links carry.
const FILTER_KEYS: [&str; 8] = [
    "actor",
    "event",
    "subject",
    "device",
    "delegation",
    "peer",
    "since",
    "until",
];

const FIELD: &str = "mt-1 block w-full rounded-md border border-slate-300 px-3 py-2 text-sm focus:border-indigo-500 focus:outline-none focus:ring-1 focus:ring-indigo-500";

/// Parses `YYYY-MM-DD` (a date input's value) as unix milliseconds at 00:00 UTC.
pub fn date_to_ms(s: &str) -> Option<i64> {
    let mut it = s.trim().splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let d: i64 = it.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * 86_400_000)
}

/// The audit log (auditor): filter, page, export, verify the chain.
#[component]
pub fn Audit() -> impl IntoView {
    let query = use_query_map();
    let filter = Memo::new(move |_| {
        let q = query.read();
        let get = |k: &str| q.get(k).unwrap_or_default();
        AuditFilter {
            actor: get("actor"),
            event: get("event"),
            subject: get("subject"),
            device: get("device"),
            delegation: get("delegation"),
            peer: get("peer"),
            since: date_to_ms(&get("since")),
            until: date_to_ms(&get("until")).map(|ms| ms + 86_400_000 - 1),
            before: get("before").parse().ok(),
            limit: Some(50),
        }
    });
    let page = Resource::new(move || filter.get(), list_audit);
    let kinds = Resource::new(|| (), |_| audit_event_kinds());
    let verify = ServerAction::<VerifyAudit>::new();
    let export_query = move || {
        let q = query.read();
        FILTER_KEYS
            .iter()
            .filter_map(|k| {
                q.get(k)
                    .filter(|v| !v.is_empty())
                    .map(|v| format!("&{k}={}", encode(&v)))
            })
            .collect::<String>()
    };
    let value = move |k: &'static str| move || query.read().get(k).unwrap_or_default();
    view! {
        <leptos_meta::Title text="Audit"/>
        <PageHeader title="Audit log" subtitle="Append-only and hash-chained: each entry seals the one before it."/>
        <div class="mb-6 flex flex-wrap items-start gap-4">
            <ActionForm action=verify>
                <button type="submit" class="rounded-md bg-indigo-600 px-3 py-2 text-sm font-medium text-white hover:bg-indigo-500">
                    "Verify chain"
                </button>
            </ActionForm>
            <a class="rounded-md border border-slate-300 bg-white px-3 py-2 text-sm text-slate-700 hover:bg-slate-50"
                href=move || format!("/audit/export?format=csv{}", export_query()) download="audit.csv">"Export CSV"</a>
            <a class="rounded-md border border-slate-300 bg-white px-3 py-2 text-sm text-slate-700 hover:bg-slate-50"
                href=move || format!("/audit/export?format=jsonl{}", export_query()) download="audit.jsonl">"Export JSON Lines"</a>
            <div class="min-w-64 flex-1">
                {move || verify.value().get().map(|r| match r {
                    Ok(report) => {
                        let ok = report.first_broken.is_none();
                        view! {
                            <div role="status" class=if ok {
                                "rounded-md border border-emerald-200 bg-emerald-50 px-4 py-2 text-sm text-emerald-800"
                            } else {
                                "rounded-md border border-red-200 bg-red-50 px-4 py-2 text-sm text-red-800"
                            }>{report.message}</div>
                        }.into_any()
                    }
                    Err(e) => view! { <ErrorNotice error=Signal::derive(move || Some(e.clone()))/> }.into_any(),
                })}
            </div>
        </div>
        <form method="get" action="/audit" class="mb-6 grid gap-4 rounded-lg border border-slate-200 bg-white p-4 shadow-sm sm:grid-cols-2 lg:grid-cols-5" aria-label="Filter the audit log">
            <div>
                <label for="f-actor" class="block text-sm font-medium text-slate-700">"Actor"</label>
                <input id="f-actor" name="actor" type="search" prop:value=value("actor") class=FIELD/>
            </div>
            <div>
                <label for="f-subject" class="block text-sm font-medium text-slate-700">"Subject"</label>
                <input id="f-subject" name="subject" type="search" prop:value=value("subject") class=FIELD/>
            </div>
            <div>
                <label for="f-device" class="block text-sm font-medium text-slate-700">"Device"</label>
                <input id="f-device" name="device" type="search" placeholder="DevId" prop:value=value("device") class=FIELD/>
            </div>
            <div>
                <label for="f-delegation" class="block text-sm font-medium text-slate-700">"Delegation"</label>
                <input id="f-delegation" name="delegation" type="search" placeholder="DelegationID or number" prop:value=value("delegation") class=FIELD/>
            </div>
            <div>
                <label for="f-peer" class="block text-sm font-medium text-slate-700">"Peer"</label>
                <input id="f-peer" name="peer" type="search" placeholder="ServerID" prop:value=value("peer") class=FIELD/>
            </div>
            <div>
                <label for="f-event" class="block text-sm font-medium text-slate-700">"Event"</label>
                <select id="f-event" name="event" class=FIELD>
                    <option value="">"Any event"</option>
                    <Suspense>
                        {move || Suspend::new(async move {
                            let selected = query.read_untracked().get("event").unwrap_or_default();
                            kinds.await.unwrap_or_default().into_iter().map(|k| {
                                let sel = k.name == selected;
                                view! { <option value=k.name.clone() selected=sel>{format!("{} ({})", k.name, k.code)}</option> }
                            }).collect_view()
                        })}
                    </Suspense>
                </select>
            </div>
            <div>
                <label for="f-since" class="block text-sm font-medium text-slate-700">"From (UTC)"</label>
                <input id="f-since" name="since" type="date" prop:value=value("since") class=FIELD/>
            </div>
            <div>
                <label for="f-until" class="block text-sm font-medium text-slate-700">"To (UTC)"</label>
                <input id="f-until" name="until" type="date" prop:value=value("until") class=FIELD/>
            </div>
            <div class="flex items-end gap-2">
                <button type="submit" class="rounded-md bg-slate-800 px-3 py-2 text-sm font-medium text-white hover:bg-slate-700">"Filter"</button>
                <A href="/audit" attr:class="px-2 py-2 text-sm text-slate-600 hover:text-slate-900">"Clear"</A>
            </div>
        </form>
        <Suspense fallback=|| view! { <p class="text-sm text-slate-500">"Loading entries…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(p) if p.entries.is_empty() => view! {
                        <p class="rounded-lg border border-dashed border-slate-300 bg-white p-6 text-sm text-slate-500">
                            "No entry matches these filters. Clear them to see the whole log."
                        </p>
                    }.into_any(),
                    Ok(p) => {
                        let next = p.next_before.map(|b| {
                            let q = query.read_untracked();
                            let mut href = format!("/audit?before={b}");
                            for k in FILTER_KEYS {
                                if let Some(v) = q.get(k).filter(|v| !v.is_empty()) {
                                    href.push_str(&format!("&{k}={}", encode(&v)));
                                }
                            }
                            href
                        });
                        view! {
                            <p class="mb-2 text-sm text-slate-500">{format!("{} matching entries", p.total_matching)}</p>
                            <div class="overflow-x-auto rounded-lg border border-slate-200 bg-white shadow-sm">
                                <table class="min-w-full divide-y divide-slate-200 text-sm">
                                    <caption class="sr-only">"Audit entries"</caption>
                                    <thead class="bg-slate-50 text-left text-xs font-semibold uppercase tracking-wide text-slate-500">
                                        <tr>
                                            <th scope="col" class="px-4 py-3">"#"</th>
                                            <th scope="col" class="px-4 py-3">"Time"</th>
                                            <th scope="col" class="px-4 py-3">"Event"</th>
                                            <th scope="col" class="px-4 py-3">"Actor"</th>
                                            <th scope="col" class="px-4 py-3">"Subject"</th>
                                            <th scope="col" class="px-4 py-3">"Source"</th>
                                            <th scope="col" class="px-4 py-3">"Details"</th>
                                        </tr>
                                    </thead>
                                    <tbody class="divide-y divide-slate-100">
                                        {p.entries.into_iter().map(|e| { let details_title = e.details.clone(); view! {
                                            <tr>
                                                <td class="px-4 py-2 font-mono text-xs text-slate-500" title=format!("hash {}", e.hash)>{e.seq}</td>
                                                <td class="whitespace-nowrap px-4 py-2"><Time ms=e.time/></td>
                                                <td class="px-4 py-2"><span class="font-medium">{e.event}</span>
                                                    <span class="ml-1 text-xs text-slate-400">{e.code}</span></td>
                                                <td class="px-4 py-2">{e.actor}</td>
                                                <td class="px-4 py-2">
                                                    {e.subject}
                                                    {e.delegation.map(|id| view! {
                                                        <A href=format!("/delegations/{id}") attr:class="ml-2 whitespace-nowrap text-xs text-indigo-700 hover:underline">"timeline →"</A>
                                                    })}
                                                </td>
                                                <td class="px-4 py-2 font-mono text-xs">{e.source}</td>
                                                <td class="max-w-md truncate px-4 py-2 font-mono text-xs text-slate-600" title=details_title>{e.details}</td>
                                            </tr>
                                        }}).collect_view()}
                                    </tbody>
                                </table>
                            </div>
                            {next.map(|href| view! {
                                <div class="mt-4 text-right">
                                    <A href=href attr:class="rounded-md border border-slate-300 bg-white px-3 py-2 text-sm text-slate-700 hover:bg-slate-50">"Older entries →"</A>
                                </div>
                            })}
                        }.into_any()
                    }
                    Err(e) => view! { <ErrorNotice error=Signal::derive(move || Some(e.clone()))/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn date_parsing() {
        assert_eq!(super::date_to_ms("1970-01-01"), Some(0));
        assert_eq!(super::date_to_ms("2026-11-27"), Some(1_795_737_600_000));
        assert_eq!(super::date_to_ms("2026-13-01"), None);
        assert_eq!(super::date_to_ms("x"), None);
    }
}
