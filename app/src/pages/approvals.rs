//! `/approvals`: our requests waiting for a second person, and peers'
//! requests waiting for us (B.4). Approvers decide — never on their own
//! request; everyone else sees the lists without buttons.

use crate::api::delegations::{
    delegation_href, group_incoming, group_outgoing, list_approvals, ApproveAll, ApproveDelegation,
    DelegationRow, IncomingRequest, RejectDelegation, RequestGroup,
};
use crate::api::{AppError, Me, Role};
use crate::components::ui::{ErrorNotice, PageHeader, Time};
use crate::pages::delegations::TermText;
use leptos::prelude::*;
use leptos_router::components::A;

const CARD: &str = "rounded-lg border border-slate-200 bg-white p-5 shadow-sm";
const FIELD: &str = "block w-full rounded-md border border-slate-300 bg-white px-3 py-1.5 text-sm focus:border-indigo-500 focus:outline-none focus:ring-1 focus:ring-indigo-500";

#[component]
pub fn Approvals() -> impl IntoView {
    let refresh = RwSignal::new(0u32);
    let list = Resource::new(move || refresh.get(), |_| list_approvals());
    view! {
        <leptos_meta::Title text="Approvals"/>
        <PageHeader title="Approvals"
            subtitle="Requests waiting for a decision. A request expires if nobody decides in time."/>
        <Suspense fallback=|| view! { <p class="text-sm text-slate-500">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match list.await {
                    Ok(a) => view! {
                        <section aria-labelledby="outgoing" class="mb-10">
                            <h2 id="outgoing" class="mb-1 text-lg font-semibold text-slate-900">"Our requests"</h2>
                            <p class="mb-3 text-sm text-slate-500">"Requested here; a second person approves before anything is sent."</p>
                            {if a.outgoing.is_empty() {
                                view! { <Empty text="No request of ours is waiting."/> }.into_any()
                            } else {
                                let groups = group_outgoing(&a.outgoing);
                                groups.into_iter().map(|g| {
                                    let rows: Vec<DelegationRow> = a.outgoing.iter().filter(|r| g.ids.contains(&r.id)).cloned().collect();
                                    let theirs: Vec<i64> = rows.iter().filter(|r| !is_me(&r.requested_by)).map(|r| r.id).collect();
                                    let by = rows.first().map(|r| r.requested_by.clone()).unwrap_or_default();
                                    let cards = rows.into_iter().map(|r| view! { <Outgoing row=r refresh/> }).collect_view();
                                    view! { <Group group=g approvable=theirs note=format!("requested by {by}") refresh>{cards}</Group> }
                                }).collect_view().into_any()
                            }}
                        </section>
                        <section aria-labelledby="incoming">
                            <h2 id="incoming" class="mb-1 text-lg font-semibold text-slate-900">"From peers"</h2>
                            <p class="mb-3 text-sm text-slate-500">"Requests another authority signed, checked against its pinned identity."</p>
                            {if a.incoming.is_empty() {
                                view! { <Empty text="No peer's request is waiting."/> }.into_any()
                            } else {
                                let groups = group_incoming(&a.incoming);
                                groups.into_iter().map(|g| {
                                    let reqs: Vec<IncomingRequest> = a.incoming.iter().filter(|r| g.ids.contains(&r.row.id)).cloned().collect();
                                    let ids = g.ids.clone();
                                    let cards = reqs.into_iter().map(|r| view! { <Incoming req=r refresh/> }).collect_view();
                                    view! { <Group group=g approvable=ids note="signed by the peer".to_owned() refresh>{cards}</Group> }
                                }).collect_view().into_any()
                            }}
                        </section>
                    }.into_any(),
                    Err(e) => view! { <ErrorNotice error=Signal::derive(move || Some(e.clone()))/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// Whether `name` is the signed-in person.
fn is_me(name: &str) -> bool {
    use_context::<Me>().is_some_and(|m| m.name == name)
}

/// Requests decided together: one request shows as its card; several show
/// a line with "Approve all" (for approvers, never on their own requests)
/// and, when many, their cards folded away.
#[component]
fn Group(
    group: RequestGroup,
    approvable: Vec<i64>,
    note: String,
    refresh: RwSignal<u32>,
    children: Children,
) -> impl IntoView {
    let n = group.ids.len();
    if n < 2 {
        return children().into_any();
    }
    let approver = use_context::<Me>().is_some_and(|m| m.has(Role::Approver));
    let action = ServerAction::<ApproveAll>::new();
    Effect::new(move |_| {
        if matches!(action.value().get(), Some(Ok(_))) {
            refresh.update(|n| *n += 1);
        }
    });
    let result = move || {
        match action.value().get() {
        Some(Ok(d)) if d.refused.is_empty() => Some(view! {
            <p role="status" class="text-sm text-emerald-800">{format!("Approved {}.", d.approved)}</p>
        }.into_any()),
        Some(Ok(d)) => Some(view! {
            <p role="status" class="text-sm text-amber-800">
                {format!("Approved {}; {} not approved: {}", d.approved, d.refused.len(),
                    d.refused.iter().take(3).map(|(id, why)| format!("{id} ({why})")).collect::<Vec<_>>().join(", "))}
            </p>
        }.into_any()),
        Some(Err(e)) => Some(view! { <ErrorNotice error=Signal::derive(move || Some(e.clone()))/> }.into_any()),
        None => None,
    }
    };
    let count = approvable.len();
    let label = format!(
        "Approve all {count} requests of {}",
        group.title.to_lowercase()
    );
    let heading = format!("{} · {n} requests", group.title);
    let section_label = heading.clone();
    let many = n > 3;
    view! {
        <section class="mb-4 rounded-lg border border-indigo-200 bg-indigo-50/40 p-4" aria-label=section_label>
            <div class="flex flex-wrap items-center justify-between gap-3">
                <p class="text-sm text-slate-800">
                    <span class="font-medium">{heading}</span>
                    <span class="text-slate-500">{format!(" — {note}")}</span>
                </p>
                {(approver && count > 0).then(|| view! {
                    <button type="button" aria-label=label.clone()
                        disabled=move || action.pending().get()
                        on:click=move |_| { action.dispatch(ApproveAll { ids: approvable.clone() }); }
                        class="rounded-md bg-emerald-600 px-3 py-1.5 text-sm font-medium text-white hover:bg-emerald-500 focus:outline-none focus:ring-2 focus:ring-emerald-500 focus:ring-offset-2 disabled:opacity-60">
                        {move || if action.pending().get() { format!("Approving {count}…") } else { format!("Approve all {count}") }}
                    </button>
                })}
            </div>
            <div class="mt-2">{result}</div>
            {if many {
                view! {
                    <details class="mt-3">
                        <summary class="cursor-pointer text-sm font-medium text-indigo-700">{format!("Show the {n} requests one by one")}</summary>
                        <div class="mt-3">{children()}</div>
                    </details>
                }.into_any()
            } else {
                view! { <div class="mt-3">{children()}</div> }.into_any()
            }}
        </section>
    }
    .into_any()
}

#[component]
fn Empty(text: &'static str) -> impl IntoView {
    view! { <p class="rounded-lg border border-dashed border-slate-300 bg-white p-4 text-sm text-slate-500">{text}</p> }
}

/// The terms every request shows: device, type and scope, term, reason.
#[component]
fn Terms(row: DelegationRow) -> impl IntoView {
    let scope = row
        .scope
        .iter()
        .map(|s| {
            view! { <li><span class="font-mono">{s.uri.clone()}</span>": "{s.rights.replace(',', ", ")}</li> }
        })
        .collect_view();
    let href = delegation_href(row.id);
    let devid = row.devid.clone();
    view! {
        <dl class="grid gap-x-6 gap-y-1 text-sm sm:grid-cols-[max-content_1fr]">
            <dt class="font-medium text-slate-500">"DevId"</dt>
            <dd class="font-mono text-xs leading-5">
                <A href=href attr:class="text-indigo-700 hover:underline">{devid}</A>
            </dd>
            <dt class="font-medium text-slate-500">"Type"</dt>
            <dd>{row.kind.clone()}{(!row.scope.is_empty()).then(|| view! { <ul class="list-inside list-disc">{scope}</ul> })}</dd>
            <dt class="font-medium text-slate-500">"Term"</dt>
            <dd><TermText term=row.term.clone() expires_at=row.expires_at/></dd>
            <dt class="font-medium text-slate-500">"Our role"</dt>
            <dd>{row.role_words()}" — peer "<span class="font-mono">{row.peer.clone()}</span></dd>
            {(!row.reason.is_empty()).then(|| view! {
                <dt class="font-medium text-slate-500">"Reason"</dt>
                <dd class="whitespace-pre-line">{row.reason.clone()}</dd>
            })}
            {(!row.requested_by.is_empty()).then(|| view! {
                <dt class="font-medium text-slate-500">"Requested by"</dt>
                <dd>{row.requested_by.clone()}" at "<Time ms=row.created_at/></dd>
            })}
            {row.wake_at.map(|ms| view! {
                <dt class="font-medium text-slate-500">"Expires"</dt>
                <dd><Time ms/></dd>
            })}
        </dl>
    }
}

#[component]
fn Outgoing(row: DelegationRow, refresh: RwSignal<u32>) -> impl IntoView {
    let me = use_context::<Me>();
    let own = me.as_ref().is_some_and(|m| m.name == row.requested_by);
    let approver = me.as_ref().is_some_and(|m| m.has(Role::Approver));
    let label = format!("Request for {}", row.devid);
    view! {
        <article class=format!("{CARD} mb-3") aria-label=label>
            <Terms row=row.clone()/>
            {if approver && !own {
                view! { <Decide row refresh/> }.into_any()
            } else if own {
                view! { <p class="mt-3 text-sm text-slate-500">"Your request: another approver decides."</p> }.into_any()
            } else {
                ().into_any()
            }}
        </article>
    }
}

#[component]
fn Incoming(req: IncomingRequest, refresh: RwSignal<u32>) -> impl IntoView {
    let me = use_context::<Me>();
    let approver = me.as_ref().is_some_and(|m| m.has(Role::Approver));
    let row = req.row;
    let label = format!("Request for {}", row.devid);
    let peer = row.peer.clone();
    view! {
        <article class=format!("{CARD} mb-3") aria-label=label>
            <div class="mb-3 rounded-md bg-slate-50 p-3 text-sm">
                <p class="font-medium text-slate-800">"Peer identity"</p>
                <dl class="mt-1 grid gap-x-6 gap-y-1 sm:grid-cols-[max-content_1fr]">
                    <dt class="text-slate-500">"ServerID"</dt><dd class="font-mono text-xs leading-5">{peer.clone()}</dd>
                    <dt class="text-slate-500">"Fingerprint"</dt>
                    <dd class="break-all font-mono text-xs leading-5">
                        {if req.fingerprint.is_empty() { "no longer a configured peer".to_owned() } else { req.fingerprint.clone() }}
                    </dd>
                    {(!req.peer_url.is_empty()).then(|| view! {
                        <dt class="text-slate-500">"URL"</dt><dd class="font-mono text-xs leading-5">{req.peer_url.clone()}</dd>
                    })}
                </dl>
            </div>
            <Terms row=row.clone()/>
            <div class="mt-3 text-sm">
                <p class="font-medium text-slate-800">"Signatures of the terms"</p>
                {if req.signatures.is_empty() {
                    view! { <p class="text-slate-500">"None recorded."</p> }.into_any()
                } else {
                    view! {
                        <ul class="mt-1 space-y-1">
                            {req.signatures.into_iter().map(|s| {
                                let by_peer = s.signer == peer;
                                view! {
                                    <li>
                                        <span class="font-mono text-xs">{s.signer.clone()}</span>
                                        {if by_peer { " (peer)" } else { " (this server)" }}
                                        {if s.verified {
                                            view! { <span class="ml-2 rounded bg-emerald-50 px-1.5 text-xs font-medium text-emerald-800">"verified"</span> }.into_any()
                                        } else {
                                            view! { <span class="ml-2 rounded bg-red-50 px-1.5 text-xs font-medium text-red-800">"not verified"</span> }.into_any()
                                        }}
                                        <code class="mt-0.5 block break-all text-xs text-slate-500">{s.signature}</code>
                                    </li>
                                }
                            }).collect_view()}
                        </ul>
                    }.into_any()
                }}
            </div>
            {approver.then(|| view! { <Decide row refresh/> })}
        </article>
    }
}

/// Approve, or reject with a reason.
#[component]
fn Decide(row: DelegationRow, refresh: RwSignal<u32>) -> impl IntoView {
    let approve = ServerAction::<ApproveDelegation>::new();
    let reject = ServerAction::<RejectDelegation>::new();
    Effect::new(move |_| {
        let done = matches!(approve.value().get(), Some(Ok(())))
            || matches!(reject.value().get(), Some(Ok(())));
        if done {
            refresh.update(|n| *n += 1);
        }
    });
    let approve_error = Signal::derive(move || approve.value().get().and_then(|r| r.err()));
    let reject_error = Signal::derive(move || reject.value().get().and_then(|r| r.err()));
    let reason_error = move || match reject_error.get() {
        Some(AppError::Invalid { field, message }) if field == "reason" => Some(message),
        _ => None,
    };
    let other_error = Signal::derive(move || match reject_error.get() {
        Some(AppError::Invalid { field, .. }) if field == "reason" => None,
        e => e,
    });
    let id = row.id.to_string();
    let id2 = id.clone();
    let devid = row.devid.clone();
    let approve_label = format!("Approve request for {devid}");
    let reject_label = format!("Reject request for {devid}");
    let reason_label = format!("Reason for rejecting {devid}");
    let reason_id = format!("reason-{}", row.id);
    let error_id = format!("reason-error-{}", row.id);
    let described = {
        let error_id = error_id.clone();
        move || reason_error().map(|_| error_id.clone())
    };
    view! {
        <div class="mt-4 flex flex-wrap items-start gap-4 border-t border-slate-100 pt-4">
            <ActionForm action=approve>
                <input type="hidden" name="id" value=id/>
                <button type="submit" aria-label=approve_label
                    disabled=move || approve.pending().get()
                    class="rounded-md bg-emerald-600 px-3 py-1.5 text-sm font-medium text-white hover:bg-emerald-500 focus:outline-none focus:ring-2 focus:ring-emerald-500 focus:ring-offset-2">
                    "Approve"
                </button>
            </ActionForm>
            <ActionForm action=reject attr:class="flex min-w-72 flex-1 flex-wrap items-start gap-2">
                <input type="hidden" name="id" value=id2/>
                <div class="min-w-56 flex-1">
                    <label for=reason_id.clone() class="sr-only">{reason_label}</label>
                    <input id=reason_id type="text" name="reason" maxlength="1024" placeholder="Reason for rejecting"
                        aria-invalid=move || reason_error().is_some().to_string() aria-describedby=described class=FIELD/>
                    {move || reason_error().map(|m| view! { <p id=error_id.clone() class="mt-1 text-sm text-red-700">{m}</p> })}
                </div>
                <button type="submit" aria-label=reject_label
                    disabled=move || reject.pending().get()
                    class="rounded-md border border-red-300 bg-white px-3 py-1.5 text-sm font-medium text-red-700 hover:bg-red-50 focus:outline-none focus:ring-2 focus:ring-red-500 focus:ring-offset-2">
                    "Reject"
                </button>
            </ActionForm>
            <div class="w-full"><ErrorNotice error=approve_error/><ErrorNotice error=other_error/></div>
        </div>
    }
}
