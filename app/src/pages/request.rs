//! `/delegations/new`: request a delegation for the devices picked on the
//! Devices page, preview what it writes to each device, send it (operator).

use crate::api::delegations::{
    get_request_options, selection_from_pairs, DevicePreview, PreviewRequest, RequestDraft,
    RequestOptions, RequestPreview, SendRequest, RIGHTS,
};
use crate::api::devices::device_href;
use crate::api::AppError;
use crate::components::ui::{ErrorNotice, PageHeader, SuccessNotice, Time};
use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_query_map};

const FIELD: &str = "mt-1 block w-full rounded-md border border-slate-300 bg-white px-3 py-2 text-sm focus:border-indigo-500 focus:outline-none focus:ring-1 focus:ring-indigo-500";
const LABEL: &str = "block text-sm font-medium text-slate-700";
const PRIMARY: &str = "rounded-md bg-indigo-600 px-4 py-2 text-sm font-medium text-white hover:bg-indigo-500 focus:outline-none focus:ring-2 focus:ring-indigo-500 focus:ring-offset-2 disabled:cursor-not-allowed disabled:opacity-50";
const CARD: &str = "rounded-lg border border-slate-200 bg-white p-5 shadow-sm";

/// The fields whose errors are shown beside them rather than on top.
const INLINE: [&str; 6] = ["peer", "kind", "scope", "term", "until", "reason"];

#[component]
pub fn NewRequest() -> impl IntoView {
    let query = use_query_map();
    let selection = Memo::new(move |_| {
        let q = query.read();
        let s = selection_from_pairs(|k| q.get(k), |k| q.get_all(k).unwrap_or_default());
        serde_json::to_string(&s).unwrap_or_default()
    });
    let options = Resource::new(move || selection.get(), get_request_options);
    let preview = ServerAction::<PreviewRequest>::new();
    let send = ServerAction::<SendRequest>::new();
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(sent)) = send.value().get() {
            navigate(
                &format!("/delegations?batch={}", sent.batch_id),
                Default::default(),
            );
        }
    });
    view! {
        <leptos_meta::Title text="Request a delegation"/>
        <PageHeader title="Request a delegation"
            subtitle="Hand management authority over the selected devices to a peer. Nothing is sent before a second person approves."/>
        <Suspense fallback=|| view! { <p class="text-sm text-slate-500">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match options.await {
                    Ok(o) => view! { <RequestForm options=o selection=selection.get_untracked() preview/> }.into_any(),
                    Err(e) => view! {
                        <div class="space-y-3">
                            <ErrorNotice error=Signal::derive(move || Some(e.clone()))/>
                            <A href="/devices" attr:class="text-sm font-medium text-indigo-700 underline">"Back to the devices"</A>
                        </div>
                    }.into_any(),
                }
            })}
        </Suspense>
        <PreviewPanel preview send/>
    }
}

/// The message of an inline field error, if the action failed on `field`.
fn field_message(error: Option<AppError>, field: &str) -> Option<String> {
    match error {
        Some(AppError::Invalid { field: f, message }) if f == field => Some(message),
        _ => None,
    }
}

#[component]
fn FieldError(#[prop(into)] error: Signal<Option<AppError>>, field: &'static str) -> impl IntoView {
    move || {
        field_message(error.get(), field).map(|m| {
            view! { <p id=format!("{field}-error") class="mt-1 text-sm text-red-700">{m}</p> }
        })
    }
}

#[component]
fn RequestForm(
    options: RequestOptions,
    selection: String,
    preview: ServerAction<PreviewRequest>,
) -> impl IntoView {
    let error = Signal::derive(move || preview.value().get().and_then(|r| r.err()));
    let general = Signal::derive(move || match error.get() {
        Some(AppError::Invalid { field, .. }) if INLINE.contains(&field.as_str()) => None,
        e => e,
    });
    // The end date counts in the browser's time zone once it is known.
    let tz_offset = RwSignal::new("0".to_owned());
    Effect::new(move |_| {
        #[cfg(feature = "hydrate")]
        {
            let minutes = -js_sys::Date::new_0().get_timezone_offset();
            tz_offset.set(format!("{}", minutes as i64));
        }
    });
    let devices_text = match options.devices {
        1 => "1 device".to_owned(),
        n => format!("{n} devices"),
    };
    let more = options.devices - options.sample.len() as i64;
    let no_peers = options.peers.is_empty();
    let tree_device = options.tree_device.clone().unwrap_or_default();
    let sample = options
        .sample
        .clone()
        .into_iter()
        .map(|d| {
            view! {
                <li><A href=device_href(&d) attr:class="rounded bg-slate-100 px-2 py-0.5 font-mono text-xs text-slate-700 hover:bg-slate-200">{d}</A></li>
            }
        })
        .collect_view();
    let peer_options = options
        .peers
        .clone()
        .into_iter()
        .map(|p| {
            let text = format!(
                "{} — {}…",
                p.server_id,
                &p.fingerprint[..p.fingerprint.len().min(16)]
            );
            view! { <option value=p.server_id>{text}</option> }
        })
        .collect_view();
    let described =
        move |f: &'static str| move || field_message(error.get(), f).map(|_| format!("{f}-error"));
    view! {
        <ActionForm action=preview attr:class="group space-y-6" attr:aria-label="Delegation request">
            <input type="hidden" name="draft[selection]" value=selection/>
            <input type="hidden" name="draft[tz_offset]" prop:value=move || tz_offset.get()/>
            <ErrorNotice error=general/>
            <section class=CARD aria-labelledby="req-devices">
                <h2 id="req-devices" class="text-base font-semibold text-slate-900">"Devices"</h2>
                <p class="mt-1 text-sm text-slate-600">{devices_text}</p>
                <ul class="mt-2 flex flex-wrap gap-2">
                    {sample}
                    {(more > 0).then(|| view! { <li class="text-xs text-slate-500">{format!("and {more} more")}</li> })}
                </ul>
            </section>

            <section class=CARD aria-labelledby="req-peer">
                <h2 id="req-peer" class="text-base font-semibold text-slate-900">"Peer"</h2>
                <label for="r-peer" class=LABEL>"Hand over to"</label>
                <select id="r-peer" name="draft[peer]" class=FIELD aria-describedby=described("peer")>
                    <option value="">"Choose a peer"</option>
                    {peer_options}
                </select>
                {no_peers.then(|| view! { <p class="mt-1 text-sm text-amber-700">"No peer is configured; an administrator adds them."</p> })}
                <FieldError error field="peer"/>
            </section>

            <section class=CARD aria-labelledby="req-kind">
                <fieldset>
                    <legend id="req-kind" class="text-base font-semibold text-slate-900">"Type"</legend>
                    <div class="mt-2 space-y-2 text-sm">
                        <label class="flex items-start gap-2">
                            <input type="radio" id="r-full" name="draft[kind]" value="full" checked class="mt-0.5"/>
                            <span><span class="font-medium">"Full"</span>" — everything this server manages on the device"</span>
                        </label>
                        <label class="flex items-start gap-2">
                            <input type="radio" id="r-partial" name="draft[kind]" value="partial" class="mt-0.5"/>
                            <span><span class="font-medium">"Partial"</span>" — chosen subtrees with chosen rights"</span>
                        </label>
                    </div>
                </fieldset>
                <div class="mt-4 hidden group-has-[#r-partial:checked]:block">
                    <ScopePicker options=options.clone() tree_device/>
                </div>
                <FieldError error field="kind"/>
                <FieldError error field="scope"/>
            </section>

            <section class=CARD aria-labelledby="req-term">
                <fieldset>
                    <legend id="req-term" class="text-base font-semibold text-slate-900">"Term"</legend>
                    <div class="mt-2 space-y-2 text-sm">
                        <label class="flex items-center gap-2">
                            <input type="radio" id="r-permanent" name="draft[term]" value="permanent" checked/>
                            <span class="font-medium">"Permanent"</span>
                        </label>
                        <label class="flex items-center gap-2">
                            <input type="radio" id="r-temporary" name="draft[term]" value="temporary"/>
                            <span class="font-medium">"Temporary"</span>
                        </label>
                    </div>
                </fieldset>
                <div class="mt-3 hidden max-w-xs group-has-[#r-temporary:checked]:block">
                    <label for="r-until" class=LABEL>"Ends on"</label>
                    <input type="date" id="r-until" name="draft[until]" class=FIELD aria-describedby=described("until")/>
                    <p class="mt-1 text-xs text-slate-500">"Authority returns at the start of this day, your time."</p>
                </div>
                <FieldError error field="term"/>
                <FieldError error field="until"/>
            </section>

            <section class=CARD>
                <label for="r-reason" class="text-base font-semibold text-slate-900">"Reason"</label>
                <textarea id="r-reason" name="draft[reason]" rows="3" maxlength="1024" class=FIELD
                    aria-describedby=described("reason")
                    placeholder="e.g. Ticket 4711: the device moves to the carrier's support desk"></textarea>
                <FieldError error field="reason"/>
            </section>

            <div class="flex items-center gap-4">
                <button type="submit" class=PRIMARY disabled=move || preview.pending().get()>"Preview"</button>
                <A href="/devices" attr:class="text-sm text-slate-600 hover:text-slate-900">"Cancel"</A>
            </div>
        </ActionForm>
    }
}

/// Interior nodes of the first device's tree with a checkbox per right.
#[component]
fn ScopePicker(options: RequestOptions, tree_device: String) -> impl IntoView {
    if options.nodes.is_empty() {
        return view! {
            <p class="text-sm text-slate-500">
                "The tree of " <span class="font-mono">{tree_device}</span>
                " has not been read yet, so there are no subtrees to pick. Request a full delegation, or wait for the device's next session."
            </p>
        }
        .into_any();
    }
    let mut index = 0usize;
    let rows = options
        .nodes
        .into_iter()
        .map(|n| {
            let refused = !n.refused.is_empty();
            let cells = RIGHTS
                .iter()
                .map(|r| {
                    index += 1;
                    let name = format!("draft[grants][{index}]");
                    view! {
                        <td class="px-3 py-1.5 text-center">
                            <input type="checkbox" name=name value=RequestDraft::grant_value(&n.uri, r)
                                aria-label=format!("{r} on {}", n.uri) disabled=refused
                                class="h-4 w-4 rounded border-slate-300 disabled:opacity-30"/>
                        </td>
                    }
                })
                .collect_view();
            let pad = format!("padding-left: {}rem", 0.75 + n.depth as f32 * 1.0);
            view! {
                <tr class=if refused { "text-slate-400" } else { "" }>
                    <th scope="row" class="whitespace-nowrap py-1.5 pr-3 text-left font-mono text-xs font-normal" style=pad>
                        {n.uri.clone()}
                    </th>
                    <td class="px-3 py-1.5 font-mono text-xs">
                        {n.effective_acl.clone()}
                        {refused.then(|| view! { <span class="ml-2 font-sans italic">{format!("({})", n.refused)}</span> })}
                    </td>
                    {cells}
                </tr>
            }
        })
        .collect_view();
    view! {
        <p class="mb-2 text-sm text-slate-600">
            "Subtrees of " <span class="font-mono">{tree_device}</span>
            ", as this server last read it. Tick the rights the peer gets on each subtree."
        </p>
        <div class="overflow-x-auto rounded-md border border-slate-200">
            <table class="min-w-full divide-y divide-slate-200 text-sm">
                <caption class="sr-only">"Subtrees and rights"</caption>
                <thead class="bg-slate-50 text-left text-xs font-semibold uppercase tracking-wide text-slate-500">
                    <tr>
                        <th scope="col" class="px-3 py-2">"Subtree"</th>
                        <th scope="col" class="px-3 py-2">"ACL now"</th>
                        {RIGHTS.iter().map(|r| view! { <th scope="col" class="px-3 py-2 text-center">{*r}</th> }).collect_view()}
                    </tr>
                </thead>
                <tbody class="divide-y divide-slate-100">{rows}</tbody>
            </table>
        </div>
    }
    .into_any()
}

#[component]
fn PreviewPanel(
    preview: ServerAction<PreviewRequest>,
    send: ServerAction<SendRequest>,
) -> impl IntoView {
    move || {
        preview
            .value()
            .get()
            .and_then(|r| r.ok())
            .map(|p| view! { <PreviewView p send/> })
    }
}

#[component]
fn PreviewView(p: RequestPreview, send: ServerAction<SendRequest>) -> impl IntoView {
    let send_error = Signal::derive(move || send.value().get().and_then(|r| r.err()));
    let sent = Signal::derive(move || {
        send.value().get().and_then(|r| r.ok()).map(|s| {
            format!(
                "Request sent as batch {} ({} delegations). It waits for a second person to approve it.",
                s.batch_id,
                s.delegations.len()
            )
        })
    });
    let blocked = p.with_problems > 0;
    let unseen = p.devices - p.previews.len() as i64;
    let term = match p.expires_at {
        Some(ms) => view! { "temporary, until " <Time ms/> }.into_any(),
        None => view! { "permanent" }.into_any(),
    };
    let scope = p
        .scope
        .iter()
        .map(|s| {
            view! {
                <li><span class="font-mono">{s.uri.clone()}</span>": "{s.rights.replace(',', ", ")}</li>
            }
        })
        .collect_view();
    let d = p.draft.clone();
    let hidden = move |name: &'static str, value: String| {
        view! { <input type="hidden" name=format!("draft[{name}]") value=value/> }
    };
    view! {
        <section aria-labelledby="preview-heading" class="mt-8 space-y-4">
            <h2 id="preview-heading" class="text-xl font-semibold text-slate-900">"Preview"</h2>
            <div class=CARD>
                <dl class="grid gap-x-6 gap-y-2 text-sm sm:grid-cols-[max-content_1fr]">
                    <dt class="font-medium text-slate-500">"Peer"</dt><dd class="font-mono">{p.peer.clone()}</dd>
                    <dt class="font-medium text-slate-500">"Type"</dt>
                    <dd>{if p.kind == "full" { "full" } else { "partial" }}
                        {(!p.scope.is_empty()).then(|| view! { <ul class="mt-1 list-inside list-disc">{scope}</ul> })}
                    </dd>
                    <dt class="font-medium text-slate-500">"Term"</dt><dd>{term}</dd>
                    <dt class="font-medium text-slate-500">"Devices"</dt><dd>{p.devices}</dd>
                </dl>
                <p class="mt-3 text-xs text-slate-500">
                    "From each device's tree as this server last read it; the tree is read again before any ACL changes (PROTOCOL B.6)."
                </p>
            </div>
            {p.previews.into_iter().map(|d| view! { <DeviceCard d/> }).collect_view()}
            {(unseen > 0).then(|| view! {
                <p class="text-sm text-slate-500">{format!("And {unseen} more devices, checked when the request is sent.")}</p>
            })}
            <ActionForm action=send attr:class="space-y-3" attr:aria-label="Send the request">
                {hidden("selection", d.selection.clone())}
                {hidden("peer", d.peer.clone())}
                {hidden("kind", d.kind.clone())}
                {hidden("term", d.term.clone())}
                {hidden("until", d.until.clone())}
                {hidden("tz_offset", d.tz_offset.clone())}
                {hidden("reason", d.reason.clone())}
                {d.grants.iter().map(|(k, v)| view! {
                    <input type="hidden" name=format!("draft[grants][{k}]") value=v.clone()/>
                }).collect_view()}
                {blocked.then(|| view! {
                    <p class="text-sm text-red-700">
                        {format!("{} of the devices cannot be delegated as asked; change the request or the selection.", p.with_problems)}
                    </p>
                })}
                <ErrorNotice error=send_error/>
                <SuccessNotice message=sent/>
                <button type="submit" class=PRIMARY disabled=move || blocked || send.pending().get()>"Send request"</button>
            </ActionForm>
        </section>
    }
}

#[component]
fn DeviceCard(d: DevicePreview) -> impl IntoView {
    let devid = d.devid.clone();
    let label = format!("Preview for {devid}");
    let href = device_href(&devid);
    let problems_label = format!("Problems with {devid}");
    let caption = format!("ACL changes on {devid}");
    let has_account = !d.account_node.is_empty();
    view! {
        <article class=CARD aria-label=label>
            <h3 class="font-mono text-sm font-semibold text-slate-900">
                <A href=href attr:class="hover:underline">{devid}</A>
            </h3>
            {(!d.problems.is_empty()).then(|| view! {
                <ul class="mt-2 space-y-1 rounded-md border border-red-200 bg-red-50 px-3 py-2 text-sm text-red-800" aria-label=problems_label>
                    {d.problems.iter().map(|m| view! { <li>{m.clone()}</li> }).collect_view()}
                </ul>
            })}
            {d.notes.iter().map(|m| view! { <p class="mt-2 text-sm text-amber-700">{m.clone()}</p> }).collect_view()}
            {has_account.then(|| view! {
                <p class="mt-3 text-sm text-slate-700">
                    "Adds the account " <code class="rounded bg-slate-100 px-1 font-mono text-xs">{d.account_node.clone()}</code>
                    " for the peer, every node of it with the ACL "
                    <code class="rounded bg-slate-100 px-1 font-mono text-xs">{d.account_acl.clone()}</code>"."
                </p>
            })}
            {if d.changes.is_empty() {
                view! { <p class="mt-2 text-sm text-slate-500">"No ACL changes known yet."</p> }.into_any()
            } else {
                view! {
                    <div class="mt-3 overflow-x-auto rounded-md border border-slate-200">
                        <table class="min-w-full divide-y divide-slate-200 text-sm">
                            <caption class="sr-only">{caption}</caption>
                            <thead class="bg-slate-50 text-left text-xs font-semibold uppercase tracking-wide text-slate-500">
                                <tr>
                                    <th scope="col" class="px-3 py-2">"Node"</th>
                                    <th scope="col" class="px-3 py-2">"ACL before"</th>
                                    <th scope="col" class="px-3 py-2">"ACL after"</th>
                                </tr>
                            </thead>
                            <tbody class="divide-y divide-slate-100 font-mono text-xs">
                                {d.changes.into_iter().map(|c| view! {
                                    <tr>
                                        <th scope="row" class="px-3 py-1.5 text-left font-normal">{c.uri}</th>
                                        <td class="px-3 py-1.5">
                                            {if c.stored.is_empty() {
                                                view! { <span class="font-sans italic text-slate-500">"inherited"</span>" "<span class="text-slate-500">{c.inherited}</span> }.into_any()
                                            } else {
                                                view! { <span>{c.stored}</span> }.into_any()
                                            }}
                                        </td>
                                        <td class="px-3 py-1.5 text-emerald-800">{c.new}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                }.into_any()
            }}
        </article>
    }
}
