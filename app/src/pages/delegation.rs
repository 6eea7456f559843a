//! One delegation, live (viewer): its terms, steps 1–6 as a timeline, a
//! sequence diagram of DMS-1, DMS-2 and the device, and the staff controls
//! the caller's roles allow.

use crate::api::live::{
    get_delegation_live, sequence, timeline, ActOnDelegation, Arrow, DelegationLive, Lane, Status,
};
use crate::api::AppError;
use crate::components::live::{use_id_param, use_live, LiveLine};
use crate::components::ui::{utc_text, ErrorNotice, PageHeader, Time, WordsView};
use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_navigate;

pub(crate) const CARD: &str = "rounded-lg border border-slate-200 bg-white p-5 shadow-sm";

#[component]
pub fn Delegation() -> impl IntoView {
    let id = use_id_param();
    let live = use_live(Signal::derive(move || {
        format!("/live/delegations/{}", id.get())
    }));
    let act = ServerAction::<ActOnDelegation>::new();
    let data = Resource::new(
        move || (id.get(), live.tick.get(), act.version().get()),
        |(id, _, _)| get_delegation_live(id),
    );
    // A retry is a new request: show it.
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(Some(new_id))) = act.value().get() {
            navigate(&format!("/delegations/{new_id}"), Default::default());
        }
    });
    view! {
        <Transition fallback=|| view! { <p class="text-sm text-slate-500">"Loading the delegation…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(d) => view! { <DelegationView d live act/> }.into_any(),
                    Err(AppError::NotFound(_)) => view! {
                        <leptos_meta::Title text="No such delegation"/>
                        <PageHeader title="There is no such delegation" subtitle=format!("No delegation has the number {}.", id.get_untracked())/>
                    }.into_any(),
                    Err(e) => view! { <ErrorNotice error=Signal::derive(move || Some(e.clone()))/> }.into_any(),
                }
            })}
        </Transition>
    }
}

fn fact(k: &'static str, v: AnyView) -> impl IntoView {
    view! {
        <div class="flex justify-between gap-4">
            <dt class="text-slate-500">{k}</dt>
            <dd class="text-right">{v}</dd>
        </div>
    }
}

fn text(s: String) -> AnyView {
    if s.is_empty() {
        view! { <span class="text-slate-400">"—"</span> }.into_any()
    } else {
        view! { <span>{s}</span> }.into_any()
    }
}

/// A state's badge colour.
pub(crate) fn state_class(state: &str) -> &'static str {
    match state {
        "Completed" => {
            "rounded-full bg-emerald-100 px-2 py-0.5 text-xs font-medium text-emerald-800"
        }
        "Aborted" | "Revoked" | "Relinquished" => {
            "rounded-full bg-slate-200 px-2 py-0.5 text-xs font-medium text-slate-700"
        }
        _ => "rounded-full bg-amber-100 px-2 py-0.5 text-xs font-medium text-amber-800",
    }
}

#[component]
fn DelegationView(
    d: DelegationLive,
    live: crate::components::live::Live,
    act: ServerAction<ActOnDelegation>,
) -> impl IntoView {
    let r = d.row.clone();
    let (dms1, dms2) = if r.role == "dms1" {
        (d.me.clone(), r.peer.clone())
    } else {
        (r.peer.clone(), d.me.clone())
    };
    let scope = if r.kind == "full" {
        "the whole tree".to_owned()
    } else {
        r.scope
            .iter()
            .map(|(u, rights)| format!("{u} ({rights})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let term = match r.expires_at {
        Some(ms) => view! { "temporary, until " <Time ms/> }.into_any(),
        None => text(r.term.clone()),
    };
    let our_role = if r.role == "dms1" {
        "DMS-1: we hand authority over"
    } else {
        "DMS-2: we receive authority"
    };
    let title = format!("Delegation {} · {}", r.id, r.devid);
    let steps = timeline(&d);
    let arrows = sequence(&d);
    let controls = d.controls.clone();
    let id = r.id;
    view! {
        <leptos_meta::Title text=title.clone()/>
        <nav aria-label="Breadcrumb" class="mb-2 flex gap-4 text-sm">
            <A href=format!("/devices/{}", crate::api::devices::encode_component(&r.devid)) attr:class="text-indigo-700 hover:underline">{format!("← {}", r.devid)}</A>
            {r.batch_id.map(|b| view! { <A href=format!("/batches/{b}") attr:class="text-indigo-700 hover:underline">{format!("Batch {b}")}</A> })}
        </nav>
        <div class="mb-6 flex flex-wrap items-start justify-between gap-4">
            <div>
                <h1 class="text-2xl font-semibold tracking-tight text-slate-900">{title}</h1>
                <p class="mt-1 flex items-center gap-2 text-sm text-slate-500">
                    <span data-testid="state" class=state_class(&r.state)>{r.state.clone()}</span>
                    {(!r.outcome.is_empty()).then(|| view! { <span>{format!("outcome: {}", r.outcome)}</span> })}
                    <span class="font-mono text-xs">{r.delegation_id.clone()}</span>
                </p>
            </div>
            <LiveLine live/>
        </div>
        <div class="grid gap-6 lg:grid-cols-3">
            <section aria-labelledby="terms-heading" class=CARD>
                <h2 id="terms-heading" class="mb-3 font-medium">"Terms"</h2>
                <dl class="space-y-2 text-sm">
                    {fact("Device", view! { <span class="font-mono text-xs">{r.devid.clone()}</span> }.into_any())}
                    {fact("Peer", view! { <span class="font-mono text-xs">{r.peer.clone()}</span> }.into_any())}
                    {fact("Our role", text(our_role.to_owned()))}
                    {fact("Type", text(r.kind.clone()))}
                    {fact("Scope", text(scope))}
                    {fact("Term", term)}
                    {fact("Reason", text(r.reason.clone()))}
                    {fact("Requested by", text(r.requested_by.clone()))}
                    {fact("Approved by", text(r.approved_by.clone()))}
                    {fact("Created", view! { <Time ms=r.created_at/> }.into_any())}
                    {r.wake_at.filter(|_| !r.ended()).map(|ms| fact("Deadline", view! { <Time ms/> }.into_any()))}
                </dl>
                <Controls id controls act/>
            </section>
            <section aria-labelledby="timeline-heading" class=format!("{CARD} lg:col-span-2")>
                <h2 id="timeline-heading" class="mb-3 font-medium">"Steps"</h2>
                <ol class="space-y-3" data-testid="timeline">
                    {steps.into_iter().map(|s| {
                        let (dot, label) = match s.status {
                            Status::Done => ("bg-emerald-500", "done"),
                            Status::Current => ("bg-amber-400 animate-pulse", "now"),
                            Status::Failed => ("bg-red-500", "stopped"),
                            Status::Pending => ("bg-slate-200", "not yet"),
                        };
                        let current = s.status == Status::Current;
                        view! {
                            <li class="flex gap-3" data-status=label aria-current=current.then_some("step")>
                                <span class=format!("mt-1.5 inline-block h-2.5 w-2.5 shrink-0 rounded-full {dot}") aria-hidden="true"></span>
                                <div class="min-w-0 flex-1">
                                    <p class=if s.status == Status::Pending { "text-sm text-slate-400" } else { "text-sm font-medium text-slate-800" }>
                                        {s.title}
                                        <span class="sr-only">{format!(" ({label})")}</span>
                                        {s.at.map(|ms| view! { <span class="ml-2 text-xs font-normal text-slate-500"><Time ms/></span> })}
                                    </p>
                                    {(!s.text.is_empty()).then(|| view! {
                                        <p class=match s.status {
                                            Status::Failed => "text-sm text-red-700",
                                            Status::Current => "text-sm text-amber-800",
                                            _ => "text-sm text-slate-500",
                                        }><WordsView words=s.text.clone()/></p>
                                    })}
                                </div>
                            </li>
                        }
                    }).collect_view()}
                </ol>
            </section>
        </div>
        <section aria-labelledby="sequence-heading" class=format!("mt-6 {CARD}")>
            <h2 id="sequence-heading" class="mb-3 font-medium">"Messages"</h2>
            <Sequence arrows dms1 dms2/>
        </section>
        <p class="mt-4 text-sm">
            <a class="text-indigo-700 hover:underline" href=format!("/audit?delegation={}", r.delegation_id)>"This delegation in the audit log →"</a>
        </p>
    }
}

#[component]
fn Controls(
    id: i64,
    controls: crate::api::live::Controls,
    act: ServerAction<ActOnDelegation>,
) -> impl IntoView {
    let error = Signal::derive(move || act.value().get().and_then(|r| r.err()));
    let button = "rounded-md px-3 py-2 text-sm font-medium text-white";
    let any = controls.abort || controls.end.is_some() || controls.retry;
    any.then(|| view! {
        <div class="mt-5 space-y-3 border-t border-slate-100 pt-4">
            <ErrorNotice error/>
            {controls.abort.then(|| view! {
                <ActionForm action=act attr:class="flex gap-2">
                    <input type="hidden" name="id" value=id/>
                    <input type="hidden" name="act" value="abort"/>
                    <label class="sr-only" for="abort-reason">"Reason for aborting"</label>
                    <input id="abort-reason" name="reason" placeholder="Reason (optional)" class="min-w-0 flex-1 rounded-md border border-slate-300 px-2 py-1.5 text-sm"/>
                    <button type="submit" class=format!("{button} bg-red-600 hover:bg-red-500")>"Abort"</button>
                </ActionForm>
            })}
            {controls.end.clone().map(|end| {
                let label = if end == "revoke" { "Revoke" } else { "Relinquish" };
                view! {
                    <ActionForm action=act attr:class="flex gap-2">
                        <input type="hidden" name="id" value=id/>
                        <input type="hidden" name="act" value=end.clone()/>
                        <label class="sr-only" for="end-reason">{format!("Reason to {}", end)}</label>
                        <input id="end-reason" name="reason" required placeholder="Reason" class="min-w-0 flex-1 rounded-md border border-slate-300 px-2 py-1.5 text-sm"/>
                        <button type="submit" class=format!("{button} bg-red-600 hover:bg-red-500")>{label}</button>
                    </ActionForm>
                }
            })}
            {controls.retry.then(|| view! {
                <ActionForm action=act>
                    <input type="hidden" name="id" value=id/>
                    <input type="hidden" name="act" value="retry"/>
                    <button type="submit" class=format!("{button} bg-indigo-600 hover:bg-indigo-500")>"Retry as a new request"</button>
                </ActionForm>
            })}
        </div>
    })
}

const LANE_X: [f64; 3] = [110.0, 380.0, 650.0];
const ROW: f64 = 46.0;
const TOP: f64 = 64.0;

fn lane_x(l: Lane) -> f64 {
    match l {
        Lane::Dms1 => LANE_X[0],
        Lane::Dms2 => LANE_X[1],
        Lane::Device => LANE_X[2],
    }
}

/// The sequence diagram: three lifelines, one arrow per message, in order.
#[component]
fn Sequence(arrows: Vec<Arrow>, dms1: String, dms2: String) -> impl IntoView {
    let height = TOP + ROW * (arrows.len().max(1) as f64) + 20.0;
    let label = format!(
        "Sequence of {} messages between DMS-1 {dms1}, DMS-2 {dms2} and the device",
        arrows.len()
    );
    let heads = [("DMS-1", dms1), ("DMS-2", dms2), ("Device", String::new())];
    let empty = arrows.is_empty();
    let list = arrows.clone();
    view! {
        <div class="overflow-x-auto">
            <svg viewBox=format!("0 0 760 {height}") width="760" height=height role="img" aria-label=label data-testid="sequence" class="font-sans">
                <defs>
                    <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
                        <path d="M 0 0 L 10 5 L 0 10 z" fill="#334155"/>
                    </marker>
                    <marker id="arrow-red" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
                        <path d="M 0 0 L 10 5 L 0 10 z" fill="#b91c1c"/>
                    </marker>
                </defs>
                {heads.into_iter().enumerate().map(|(i, (name, id))| {
                    let x = LANE_X[i];
                    view! {
                        <g>
                            <rect x=x - 90.0 y="4" width="180" height="38" rx="6" fill="#eef2ff" stroke="#6366f1"/>
                            <text x=x y="20" text-anchor="middle" font-size="13" font-weight="600" fill="#1e1b4b">{name}</text>
                            <text x=x y="35" text-anchor="middle" font-size="11" fill="#475569">{id}</text>
                            <line x1=x y1="42" x2=x y2=height stroke="#cbd5e1" stroke-dasharray="4 4"/>
                        </g>
                    }
                }).collect_view()}
                {empty.then(|| view! {
                    <text x="380" y=TOP + 10.0 text-anchor="middle" font-size="12" fill="#94a3b8">"No message yet."</text>
                })}
                {arrows.into_iter().enumerate().map(|(i, a)| {
                    let y = TOP + ROW * i as f64 + 16.0;
                    let (x1, x2) = (lane_x(a.from), lane_x(a.to));
                    let (x1, x2) = if x1 < x2 { (x1 + 4.0, x2 - 4.0) } else { (x1 - 4.0, x2 + 4.0) };
                    let mid = (x1 + x2) / 2.0;
                    let colour = if a.failed { "#b91c1c" } else if a.pending { "#b45309" } else { "#334155" };
                    let marker = if a.failed { "url(#arrow-red)" } else { "url(#arrow)" };
                    view! {
                        <g data-message=a.label.clone()>
                            <title>{format!("{} — {} at {}", a.label, a.note, utc_text(a.at))}</title>
                            <text x=mid y=y - 6.0 text-anchor="middle" font-size="12" font-weight="500" fill=colour>{a.label.clone()}</text>
                            <line x1=x1 y1=y x2=x2 y2=y stroke=colour stroke-width="1.5"
                                stroke-dasharray=if a.pending { "6 4" } else { "" } marker-end=marker/>
                            <text x=mid y=y + 14.0 text-anchor="middle" font-size="11" fill=colour>{a.note.clone()}</text>
                        </g>
                    }
                }).collect_view()}
            </svg>
        </div>
        // The same, for screen readers and copying.
        <ol class="sr-only">
            {list.into_iter().map(|a| view! { <li>{format!("{:?} to {:?}: {} ({})", a.from, a.to, a.label, a.note)}</li> }).collect_view()}
        </ol>
    }
}
