use crate::api::devices::{
    decode_component, get_device, DeviceDetail, JobRow, SessionRow, TreeNodeRow,
};
use crate::api::live::{get_device_delegations, ownership, DelegationRow};
use crate::api::{AppError, Me};
use crate::components::ui::{ErrorNotice, PageHeader, Time};
use crate::pages::devices::StateBadge;
use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_params_map;

const CARD: &str = "rounded-lg border border-slate-200 bg-white p-5 shadow-sm";
const TH: &str = "px-4 py-3";
const THEAD: &str =
    "bg-slate-50 text-left text-xs font-semibold uppercase tracking-wide text-slate-500";

/// The delegations of the device on the page, or why they are missing.
type DeviceDelegations = Result<Vec<DelegationRow>, AppError>;

/// One device (viewer): identity, DevInfo/DevDetail, the cached tree with
/// ACLs, DM sessions and jobs.
#[component]
pub fn Device() -> impl IntoView {
    let params = use_params_map();
    // The server hands the router a decoded segment, the browser a partly
    // decoded one: decoding again makes both the DevId.
    let devid =
        Memo::new(move |_| decode_component(&params.read().get("devid").unwrap_or_default()));
    // The device and its delegations load together, in one resource read by
    // one `<Suspense>`: on the server, a `<Suspense>` made while another
    // resolves could leave the page's stream waiting for ever.
    let page = Resource::new(
        move || devid.get(),
        |id| futures::future::join(get_device(id.clone()), get_device_delegations(id)),
    );
    view! {
        <Suspense fallback=|| view! { <p class="text-sm text-slate-500">"Loading the device…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    (Ok(d), history) => view! { <DeviceView d history/> }.into_any(),
                    (Err(AppError::NotFound(_)), _) => view! { <NoSuchDevice devid=devid.get_untracked()/> }.into_any(),
                    (Err(e), _) => view! { <ErrorNotice error=Signal::derive(move || Some(e.clone()))/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn NoSuchDevice(devid: String) -> impl IntoView {
    view! {
        <leptos_meta::Title text="No such device"/>
        <div class="mx-auto max-w-md py-16 text-center">
            <p class="text-sm font-semibold text-indigo-600">"404"</p>
            <h1 class="mt-2 text-2xl font-semibold">"There is no such device"</h1>
            <p class="mt-2 break-all text-slate-500">
                "No device has the DevId " <span class="font-mono">{devid}</span> "."
            </p>
            <A href="/devices" attr:class="mt-6 inline-block rounded-md bg-indigo-600 px-4 py-2 text-sm font-medium text-white hover:bg-indigo-500">
                "Search the devices"
            </A>
        </div>
    }
}

fn when(ms: Option<i64>) -> AnyView {
    match ms {
        Some(ms) => view! { <Time ms/> }.into_any(),
        None => view! { <span class="text-slate-400">"never"</span> }.into_any(),
    }
}

fn or_dash(s: String) -> String {
    if s.is_empty() {
        "—".to_owned()
    } else {
        s
    }
}

#[component]
fn DeviceView(d: DeviceDetail, history: DeviceDelegations) -> impl IntoView {
    let facts: Vec<(&str, AnyView)> = vec![
        ("Authority", view! { <span class="font-mono">{or_dash(d.authority.clone())}</span> }.into_any()),
        ("State", view! { <StateBadge state=d.state.clone()/> }.into_any()),
        ("Provisioned", view! { <Time ms=d.created_at/> }.into_any()),
        ("First seen", when(d.first_seen)),
        ("Last seen", when(d.last_seen)),
        ("Client authentication", view! { {or_dash(d.auth_type.clone())} }.into_any()),
        ("Push address", view! { <span class="break-all font-mono text-xs">{or_dash(d.push_address.clone())}</span> }.into_any()),
    ];
    let devinfo = vec![
        ("DevId".to_owned(), d.devid.clone()),
        ("Man".to_owned(), d.man.clone()),
        ("Mod".to_owned(), d.model.clone()),
        ("DmV".to_owned(), d.dmv.clone()),
        ("Lang".to_owned(), d.lang.clone()),
    ];
    let subtitle = [d.man.as_str(), d.model.as_str()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" · ");
    view! {
        <leptos_meta::Title text=d.devid.clone()/>
        <nav aria-label="Breadcrumb" class="mb-2 text-sm">
            <A href="/devices" attr:class="text-indigo-700 hover:underline">"← Devices"</A>
        </nav>
        <PageHeader title=d.devid.clone() subtitle=subtitle/>
        <div class="grid gap-6 lg:grid-cols-3">
            <section aria-labelledby="status-heading" class=CARD>
                <h2 id="status-heading" class="mb-3 font-medium">"Status"</h2>
                <dl class="space-y-2 text-sm">
                    {facts.into_iter().map(|(k, v)| view! {
                        <div class="flex justify-between gap-4">
                            <dt class="text-slate-500">{k}</dt>
                            <dd class="text-right">{v}</dd>
                        </div>
                    }).collect_view()}
                </dl>
            </section>
            <Pairs id="devinfo-heading" title="DevInfo" pairs=devinfo empty="The device has not reported DevInfo yet."/>
            <Pairs id="devdetail-heading" title="DevDetail" pairs=d.devdetail.clone()
                empty="The device has not reported DevDetail yet; it is read in its first session."/>
        </div>
        <OwnershipSection history authority=d.authority.clone()/>
        <TreeSection tree=d.tree/>
        <SessionsSection sessions=d.sessions/>
        <JobsSection jobs=d.jobs/>
    }
}

#[component]
fn Pairs(
    id: &'static str,
    title: &'static str,
    pairs: Vec<(String, String)>,
    empty: &'static str,
) -> impl IntoView {
    let pairs: Vec<_> = pairs.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    let body = if pairs.iter().all(|(k, _)| k == "DevId") {
        view! { <p class="text-sm text-slate-500">{empty}</p> }.into_any()
    } else {
        view! {
            <dl class="space-y-2 text-sm">
                {pairs.into_iter().map(|(k, v)| view! {
                    <div class="flex justify-between gap-4">
                        <dt class="text-slate-500">{k}</dt>
                        <dd class="break-all text-right font-mono text-xs">{v}</dd>
                    </div>
                }).collect_view()}
            </dl>
        }
        .into_any()
    };
    view! {
        <section aria-labelledby=id class=CARD>
            <h2 id=id class="mb-3 font-medium">{title}</h2>
            {body}
        </section>
    }
}

#[component]
fn TreeSection(tree: Vec<TreeNodeRow>) -> impl IntoView {
    let body = if tree.is_empty() {
        view! {
            <p class="rounded-lg border border-dashed border-slate-300 bg-white p-6 text-sm text-slate-500">
                "No tree read yet. It is read when the device next opens a DM session; notify it or wait for its next scheduled session."
            </p>
        }
        .into_any()
    } else {
        view! {
            <div class="overflow-x-auto rounded-lg border border-slate-200 bg-white shadow-sm">
                <table class="min-w-full divide-y divide-slate-200 text-sm">
                    <caption class="sr-only">"Management tree with ACLs"</caption>
                    <thead class=THEAD>
                        <tr>
                            <th scope="col" class=TH>"Node"</th>
                            <th scope="col" class=TH>"Format"</th>
                            <th scope="col" class=TH>"Value"</th>
                            <th scope="col" class=TH>"ACL"</th>
                        </tr>
                    </thead>
                    <tbody class="divide-y divide-slate-100">
                        {tree.into_iter().map(|n| view! { <TreeRow n/> }).collect_view()}
                    </tbody>
                </table>
            </div>
        }
        .into_any()
    };
    view! {
        <section aria-labelledby="tree-heading" class="mt-8">
            <h2 id="tree-heading" class="mb-1 text-lg font-medium">"Tree and ACLs"</h2>
            <p class="mb-3 text-sm text-slate-500">
                "As last read from the device. A node without its own ACL inherits its nearest ancestor's, shown in grey."
            </p>
            {body}
        </section>
    }
}

#[component]
fn TreeRow(n: TreeNodeRow) -> impl IntoView {
    let indent = format!("padding-left: {}rem", 1.0 + n.depth as f32 * 1.25);
    let interior = n.kind == "interior" || (n.kind.is_empty() && n.format == "node");
    let format = [n.format.as_str(), n.mime.as_str()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" · ");
    let acl = match &n.inherited_from {
        None => view! { <span class="font-mono text-xs text-slate-800">{n.effective_acl.clone()}</span> }.into_any(),
        Some(from) => view! {
            <span class="font-mono text-xs text-slate-400" title=format!("Inherited from {from}")>
                {n.effective_acl.clone()}
                <span class="sr-only">{format!(" (inherited from {from})")}</span>
            </span>
        }
        .into_any(),
    };
    let value_title = n.value.clone();
    view! {
        <tr data-uri=n.uri.clone()>
            <td class="whitespace-nowrap py-1.5 pr-4 font-mono text-xs" style=indent title=n.uri.clone()>
                <span aria-hidden="true" class="mr-1 text-slate-400">{if interior { "▸" } else { "·" }}</span>
                <span class=if interior { "font-medium text-slate-900" } else { "text-slate-700" }>{n.name}</span>
            </td>
            <td class="whitespace-nowrap px-4 py-1.5 text-xs text-slate-500">{format}</td>
            <td class="max-w-xs truncate px-4 py-1.5 font-mono text-xs" title=value_title>{n.value}</td>
            <td class="px-4 py-1.5">{acl}</td>
        </tr>
    }
}

#[component]
fn SessionsSection(sessions: Vec<SessionRow>) -> impl IntoView {
    let body = if sessions.is_empty() {
        view! {
            <p class="rounded-lg border border-dashed border-slate-300 bg-white p-6 text-sm text-slate-500">
                "No DM session yet. The device connects on its own schedule, or when notified."
            </p>
        }
        .into_any()
    } else {
        view! {
            <div class="overflow-x-auto rounded-lg border border-slate-200 bg-white shadow-sm">
                <table class="min-w-full divide-y divide-slate-200 text-sm">
                    <caption class="sr-only">"Latest DM sessions"</caption>
                    <thead class=THEAD>
                        <tr>
                            <th scope="col" class=TH>"Started"</th>
                            <th scope="col" class=TH>"Ended"</th>
                            <th scope="col" class=TH>"Outcome"</th>
                            <th scope="col" class=TH>"Messages"</th>
                            <th scope="col" class=TH>"Commands"</th>
                            <th scope="col" class=TH>"Source"</th>
                            <th scope="col" class=TH>"Session"</th>
                        </tr>
                    </thead>
                    <tbody class="divide-y divide-slate-100">
                        {sessions.into_iter().map(|s| { let ok = s.outcome == "completed"; view! {
                            <tr>
                                <td class="whitespace-nowrap px-4 py-2"><Time ms=s.started_at/></td>
                                <td class="whitespace-nowrap px-4 py-2"><Time ms=s.ended_at/></td>
                                <td class=if ok { "px-4 py-2" } else { "px-4 py-2 font-medium text-red-700" }>{s.outcome}</td>
                                <td class="px-4 py-2">{s.messages}</td>
                                <td class="px-4 py-2">{s.commands}</td>
                                <td class="px-4 py-2 font-mono text-xs">{s.source}</td>
                                <td class="px-4 py-2 font-mono text-xs">{s.session_id}</td>
                            </tr>
                        }}).collect_view()}
                    </tbody>
                </table>
            </div>
        }
        .into_any()
    };
    view! {
        <section aria-labelledby="sessions-heading" class="mt-8">
            <h2 id="sessions-heading" class="mb-3 text-lg font-medium">"DM sessions"</h2>
            {body}
        </section>
    }
}

#[component]
fn JobsSection(jobs: Vec<JobRow>) -> impl IntoView {
    let body = if jobs.is_empty() {
        view! {
            <p class="rounded-lg border border-dashed border-slate-300 bg-white p-6 text-sm text-slate-500">
                "No commands queued for this device."
            </p>
        }
        .into_any()
    } else {
        view! {
            <div class="overflow-x-auto rounded-lg border border-slate-200 bg-white shadow-sm">
                <table class="min-w-full divide-y divide-slate-200 text-sm">
                    <caption class="sr-only">"Latest jobs"</caption>
                    <thead class=THEAD>
                        <tr>
                            <th scope="col" class=TH>"#"</th>
                            <th scope="col" class=TH>"Command"</th>
                            <th scope="col" class=TH>"State"</th>
                            <th scope="col" class=TH>"Status"</th>
                            <th scope="col" class=TH>"Requested by"</th>
                            <th scope="col" class=TH>"Updated"</th>
                        </tr>
                    </thead>
                    <tbody class="divide-y divide-slate-100">
                        {jobs.into_iter().map(|j| {
                            let command_title = j.command.clone();
                            let status = match j.status {
                                Some(code) if j.status_meaning.is_empty() => code.to_string(),
                                Some(code) => format!("{code} {}", j.status_meaning),
                                None => String::new(),
                            };
                            let failed = j.state == "failed";
                            view! {
                                <tr>
                                    <td class="px-4 py-2 font-mono text-xs text-slate-500">{j.id}</td>
                                    <td class="max-w-md truncate px-4 py-2 font-mono text-xs" title=command_title>{j.command}</td>
                                    <td class=if failed { "px-4 py-2 font-medium text-red-700" } else { "px-4 py-2" }>{j.state}</td>
                                    <td class="px-4 py-2">
                                        {status}
                                        {(!j.error.is_empty()).then(|| view! { <p class="text-xs text-red-700">{j.error.clone()}</p> })}
                                    </td>
                                    <td class="px-4 py-2">{j.requested_by}</td>
                                    <td class="whitespace-nowrap px-4 py-2"><Time ms=j.updated_at/></td>
                                </tr>
                            }
                        }).collect_view()}
                    </tbody>
                </table>
            </div>
        }
        .into_any()
    };
    view! {
        <section aria-labelledby="jobs-heading" class="mt-8">
            <h2 id="jobs-heading" class="mb-3 text-lg font-medium">"Jobs"</h2>
            {body}
        </section>
    }
}

/// B.7: which authority manages which subtree, since and until when, and
/// the delegations of this device.
#[component]
fn OwnershipSection(history: DeviceDelegations, authority: String) -> impl IntoView {
    let me = use_context::<Me>().map(|m| m.server_id).unwrap_or_default();
    view! {
        <section aria-labelledby="ownership-heading" class="mt-8">
            <h2 id="ownership-heading" class="mb-1 text-lg font-medium">"Who manages what"</h2>
            <p class="mb-3 text-sm text-slate-500">"From the completed delegations of this device; the rest stays with its authority."</p>
            {match history {
                Ok(rows) => {
                    let map = ownership(&authority, &me, &rows);
                    view! {
                        <div class="overflow-x-auto rounded-lg border border-slate-200 bg-white shadow-sm">
                            <table class="min-w-full divide-y divide-slate-200 text-sm" data-testid="ownership">
                                <caption class="sr-only">"Authorities by subtree"</caption>
                                <thead class=THEAD>
                                    <tr>
                                        <th scope="col" class=TH>"Authority"</th>
                                        <th scope="col" class=TH>"Subtree"</th>
                                        <th scope="col" class=TH>"Rights"</th>
                                        <th scope="col" class=TH>"Since"</th>
                                        <th scope="col" class=TH>"Until"</th>
                                        <th scope="col" class=TH>"By"</th>
                                    </tr>
                                </thead>
                                <tbody class="divide-y divide-slate-100">
                                    {map.into_iter().map(|o| view! {
                                        <tr>
                                            <td class="px-4 py-2 font-mono text-xs">{o.authority}</td>
                                            <td class="px-4 py-2 font-mono text-xs">{o.subtree}</td>
                                            <td class="px-4 py-2 text-xs">{o.rights}</td>
                                            <td class="whitespace-nowrap px-4 py-2">{o.since.map(|ms| view! { <Time ms/> })}</td>
                                            <td class="whitespace-nowrap px-4 py-2">{match o.until {
                                                Some(ms) => view! { <Time ms/> }.into_any(),
                                                None if o.delegation.is_some() => view! { "permanent" }.into_any(),
                                                None => view! { "" }.into_any(),
                                            }}</td>
                                            <td class="px-4 py-2">{o.delegation.map(|id| view! {
                                                <A href=format!("/delegations/{id}") attr:class="text-indigo-700 hover:underline">{format!("delegation {id}")}</A>
                                            })}</td>
                                        </tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
                        </div>
                        <h3 class="mb-2 mt-6 font-medium">"Delegations of this device"</h3>
                        {if rows.is_empty() {
                            view! { <p class="text-sm text-slate-500">"None yet."</p> }.into_any()
                        } else {
                            view! {
                                <ul class="divide-y divide-slate-100 rounded-lg border border-slate-200 bg-white text-sm shadow-sm" data-testid="delegation-history">
                                    {rows.into_iter().map(|r| view! {
                                        <li class="flex flex-wrap items-center gap-3 px-4 py-2">
                                            <A href=format!("/delegations/{}", r.id) attr:class="font-medium text-indigo-700 hover:underline">{format!("Delegation {}", r.id)}</A>
                                            <span class=crate::pages::delegation::state_class(&r.state)>{r.state.clone()}</span>
                                            <span class="text-slate-600">{format!("{} {} · {} · {}", r.kind, r.term, if r.role == "dms1" { "to" } else { "from" }, r.peer)}</span>
                                            <span class="ml-auto text-xs text-slate-500"><Time ms=r.created_at/></span>
                                        </li>
                                    }).collect_view()}
                                </ul>
                            }.into_any()
                        }}
                    }.into_any()
                }
                Err(e) => view! { <ErrorNotice error=Signal::derive(move || Some(e.clone()))/> }.into_any(),
            }}
        </section>
    }
}
