use crate::api::peers::{
    peers_overview, AddPeer, ConnectionReport, PeerRow, RemovePeer, TestPeer, ThisServer,
    UpdatePeer,
};
use crate::api::AppError;
use crate::components::ui::{ErrorNotice, PageHeader, SuccessNotice, Time};
use leptos::html::Form;
use leptos::prelude::*;

const FIELD: &str = "mt-1 block w-full rounded-md border border-slate-300 px-3 py-2 text-sm focus:border-indigo-500 focus:outline-none focus:ring-1 focus:ring-indigo-500 aria-[invalid=true]:border-red-400";
const BUTTON: &str = "rounded-md bg-indigo-600 px-3 py-2 text-sm font-medium text-white hover:bg-indigo-500 disabled:opacity-60";
const BUTTON_QUIET: &str = "rounded-md border border-slate-300 bg-white px-3 py-1.5 text-sm text-slate-700 hover:bg-slate-50 disabled:opacity-60";
const BUTTON_DANGER: &str =
    "rounded-md bg-red-600 px-3 py-1.5 text-sm font-medium text-white hover:bg-red-500";
const SUMMARY: &str = "cursor-pointer rounded text-sm text-indigo-600 hover:text-indigo-500 focus:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500";

const POLICY_HINT: &str = r#"Optional. JSON, e.g. {"name":"corp-apps","roles":["delegated"],"types":["partial"],"subtrees":["./Vendor/Corp"],"max_days":30}. Empty: every request from this peer waits for a person."#;

/// The message of a refused field, if `error` names `field`.
fn field_message(error: Option<AppError>, field: &str) -> Option<String> {
    match error {
        Some(AppError::Invalid { field: f, message }) if f == field => Some(message),
        _ => None,
    }
}

/// An error that names no field of the form, for the notice above it.
fn form_level(error: Option<AppError>) -> Option<AppError> {
    const FIELDS: [&str; 5] = ["server_id", "url", "dm_url", "fingerprint", "auto_accept"];
    error.filter(
        |e| !matches!(e, AppError::Invalid { field, .. } if FIELDS.contains(&field.as_str())),
    )
}

/// Peers (viewer, admin): our identity for other authorities, the peers
/// we trust; admins add, edit, test and remove them.
#[component]
pub fn Peers() -> impl IntoView {
    let add = ServerAction::<AddPeer>::new();
    let update = ServerAction::<UpdatePeer>::new();
    let remove = ServerAction::<RemovePeer>::new();
    let test = ServerAction::<TestPeer>::new();
    let overview = Resource::new(
        move || {
            (
                add.version().get(),
                update.version().get(),
                remove.version().get(),
            )
        },
        |_| peers_overview(),
    );
    // The peer whose edit form was sent last: its field errors show there.
    let (edited, set_edited) = signal(None::<String>);
    Effect::new(move |_| {
        if let Some(input) = update.input().get() {
            set_edited.set(Some(input.server_id));
        }
    });
    let update_error = Signal::derive(move || update.value().get().and_then(|r| r.err()));
    let last_error = Signal::derive(move || {
        [
            remove.value().get().and_then(|r| r.err()),
            test.value().get().and_then(|r| r.err()),
        ]
        .into_iter()
        .flatten()
        .chain(form_level(update_error.get()))
        .next()
    });
    // The outcome of the latest edit or removal. Without JavaScript only one
    // of them can have a value (the form was sent by the browser itself).
    const SAVED: &str =
        "Peer saved. The peer listener uses the new settings from the next connection.";
    const REMOVED: &str = "Peer removed. Its connections are refused from now on.";
    // Outer `None`: no action has finished in this page yet.
    let (latest, set_latest) = signal(None::<Option<&'static str>>);
    Effect::new(move |_| {
        if let Some(r) = update.value().get() {
            set_latest.set(Some(r.ok().map(|()| SAVED)));
        }
    });
    Effect::new(move |_| {
        if let Some(r) = remove.value().get() {
            set_latest.set(Some(r.ok().map(|()| REMOVED)));
        }
    });
    let done = Signal::derive(move || {
        let shown = latest.get().unwrap_or_else(|| {
            if matches!(update.value().get(), Some(Ok(()))) {
                Some(SAVED)
            } else if matches!(remove.value().get(), Some(Ok(()))) {
                Some(REMOVED)
            } else {
                None
            }
        });
        shown.map(str::to_owned)
    });
    view! {
        <leptos_meta::Title text="Peers"/>
        <PageHeader title="Peers" subtitle="The other authorities this server hands devices to and takes them from, recognised by their key alone."/>
        <Suspense fallback=|| view! { <p class="text-sm text-slate-500">"Loading peers…"</p> }>
            {move || Suspend::new(async move {
                match overview.await {
                    Ok(o) => {
                        let can_edit = o.can_edit;
                        view! {
                            <div class="grid gap-6 lg:grid-cols-2">
                                <ThisServerCard this=o.this/>
                                {can_edit.then(|| view! { <AddPeerForm add/> })}
                            </div>
                            <section aria-labelledby="peers-heading" class="mt-8">
                                <h2 id="peers-heading" class="mb-3 font-medium">"Configured peers"</h2>
                                <div class="mb-4 space-y-2">
                                    <ErrorNotice error=last_error/>
                                    <SuccessNotice message=done/>
                                    <TestNotice test/>
                                </div>
                                {if o.peers.is_empty() {
                                    view! {
                                        <p class="rounded-lg border border-dashed border-slate-300 bg-white p-6 text-sm text-slate-500">
                                            {if can_edit {
                                                "No peers yet. Ask the other authority's administrator for their ServerID, peer URL, DM URL and fingerprint, add them with the form above, and give them ours from the card."
                                            } else {
                                                "No peers yet. An administrator adds them; until then no delegation can be made."
                                            }}
                                        </p>
                                    }.into_any()
                                } else {
                                    view! { <PeerTable peers=o.peers can_edit update remove test edited update_error/> }.into_any()
                                }}
                            </section>
                        }.into_any()
                    }
                    Err(e) => view! { <ErrorNotice error=Signal::derive(move || Some(e.clone()))/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// What to hand to a peer's administrator.
#[component]
fn ThisServerCard(this: ThisServer) -> impl IntoView {
    let fingerprint = this.fingerprint.clone();
    let (copied, set_copied) = signal(None::<bool>);
    // The copy button needs the browser's clipboard: it is enabled once the
    // page is interactive. Before that the text can still be selected.
    let (ready, set_ready) = signal(false);
    Effect::new(move |_| set_ready.set(true));
    let on_copy = move |_| {
        #[cfg(feature = "hydrate")]
        copy_text(&fingerprint, move |ok| set_copied.set(Some(ok)));
        #[cfg(not(feature = "hydrate"))]
        let _ = (&fingerprint, set_copied);
    };
    view! {
        <section aria-labelledby="this-heading" class="rounded-lg border border-slate-200 bg-white p-5 shadow-sm">
            <h2 id="this-heading" class="font-medium">"This server"</h2>
            <p class="mt-1 text-sm text-slate-500">"Give these to each peer's administrator, out of band (PROTOCOL B.1)."</p>
            <dl class="mt-4 grid grid-cols-[max-content_1fr] gap-x-4 gap-y-2 text-sm">
                <dt class="text-slate-500">"ServerID"</dt>
                <dd class="font-mono text-slate-900">{this.server_id}</dd>
                <dt class="text-slate-500">"Peer URL"</dt>
                <dd class="break-all font-mono text-slate-900">{this.peer_url}</dd>
                <dt class="text-slate-500">"DM URL"</dt>
                <dd class="break-all font-mono text-slate-900">{this.dm_url}</dd>
            </dl>
            {this.note.map(|n| view! { <p class="mt-2 text-xs text-amber-700">{n}</p> })}
            <div class="mt-4">
                <p id="own-fingerprint-label" class="text-sm text-slate-500">"Fingerprint (SHA-256 of our public key)"</p>
                <div class="mt-1 flex items-start gap-2">
                    <code id="own-fingerprint" aria-labelledby="own-fingerprint-label"
                        class="block flex-1 select-all break-all rounded-md border border-slate-200 bg-slate-50 px-3 py-2 font-mono text-sm text-slate-900">
                        {this.fingerprint}
                    </code>
                    <button type="button" class=BUTTON_QUIET on:click=on_copy disabled=move || !ready.get()
                        aria-describedby="copy-status" title="Copy the fingerprint to the clipboard">
                        "Copy fingerprint"
                    </button>
                </div>
                <p id="copy-status" role="status" class="mt-1 min-h-4 text-xs text-slate-500">
                    {move || match copied.get() {
                        Some(true) => "Copied to the clipboard.",
                        Some(false) => "The browser did not allow copying: select the text and copy it.",
                        None => "",
                    }}
                </p>
            </div>
        </section>
    }
}

/// Writes `text` to the clipboard and reports whether the browser allowed it.
#[cfg(feature = "hydrate")]
fn copy_text(text: &str, done: impl Fn(bool) + Clone + 'static) {
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen::{JsCast, JsValue};
    let get =
        |target: &JsValue, key: &str| js_sys::Reflect::get(target, &JsValue::from_str(key)).ok();
    let promise = get(&js_sys::global(), "navigator")
        .and_then(|nav| get(&nav, "clipboard"))
        .filter(|c| !c.is_undefined())
        .and_then(|clipboard| {
            let write = get(&clipboard, "writeText")?
                .dyn_into::<js_sys::Function>()
                .ok()?;
            write
                .call1(&clipboard, &JsValue::from_str(text))
                .ok()?
                .dyn_into::<js_sys::Promise>()
                .ok()
        });
    let Some(promise) = promise else {
        done(false);
        return;
    };
    let on_ok = {
        let done = done.clone();
        Closure::once(move |_: JsValue| done(true))
    };
    let on_err = Closure::once(move |_: JsValue| done(false));
    let _ = promise.then2(&on_ok, &on_err);
    // The browser calls one of them later; they live as long as the page.
    on_ok.forget();
    on_err.forget();
}

/// A refused field's message under its input.
#[component]
fn FieldError(
    #[prop(into)] id: String,
    #[prop(into)] message: Signal<Option<String>>,
) -> impl IntoView {
    view! {
        <p id=id class="mt-1 text-xs text-red-700">{move || message.get()}</p>
    }
}

#[component]
fn AddPeerForm(add: ServerAction<AddPeer>) -> impl IntoView {
    let form = NodeRef::<Form>::new();
    let error = Signal::derive(move || add.value().get().and_then(|r| r.err()));
    let msg = move |field: &'static str| Signal::derive(move || field_message(error.get(), field));
    let invalid =
        move |field: &'static str| move || field_message(error.get(), field).is_some().to_string();
    let added = Signal::derive(move || match add.value().get() {
        Some(Ok(())) => Some("Peer added. Its connections are accepted from now on.".to_owned()),
        _ => None,
    });
    Effect::new(move |_| {
        if matches!(add.value().get(), Some(Ok(()))) {
            if let Some(f) = form.get() {
                f.reset();
            }
        }
    });
    view! {
        <section aria-labelledby="add-heading" class="rounded-lg border border-slate-200 bg-white p-5 shadow-sm">
            <h2 id="add-heading" class="mb-4 font-medium">"Add a peer"</h2>
            <ActionForm action=add node_ref=form attr:class="space-y-4">
                <SuccessNotice message=added/>
                <ErrorNotice error=Signal::derive(move || form_level(error.get()))/>
                <div>
                    <label for="add-server-id" class="block text-sm font-medium text-slate-700">"ServerID"</label>
                    <input id="add-server-id" name="server_id" type="text" required maxlength="255" autocomplete="off"
                        aria-invalid=invalid("server_id") aria-describedby="add-server-id-error" class=FIELD/>
                    <FieldError id="add-server-id-error" message=msg("server_id")/>
                </div>
                <div>
                    <label for="add-url" class="block text-sm font-medium text-slate-700">"Peer URL"</label>
                    <input id="add-url" name="url" type="text" required placeholder="https://carrier.example:8443" autocomplete="off"
                        aria-invalid=invalid("url") aria-describedby="add-url-error" class=FIELD/>
                    <FieldError id="add-url-error" message=msg("url")/>
                </div>
                <div>
                    <label for="add-dm-url" class="block text-sm font-medium text-slate-700">"DM URL"</label>
                    <input id="add-dm-url" name="dm_url" type="text" required placeholder="https://carrier.example/dm" autocomplete="off"
                        aria-invalid=invalid("dm_url") aria-describedby="add-dm-url-error" class=FIELD/>
                    <FieldError id="add-dm-url-error" message=msg("dm_url")/>
                </div>
                <div>
                    <label for="add-fingerprint" class="block text-sm font-medium text-slate-700">"Fingerprint"</label>
                    <input id="add-fingerprint" name="fingerprint" type="text" required autocomplete="off" spellcheck="false"
                        aria-invalid=invalid("fingerprint") aria-describedby="add-fingerprint-hint add-fingerprint-error" class=format!("{FIELD} font-mono")/>
                    <p id="add-fingerprint-hint" class="mt-1 text-xs text-slate-500">"64 hex digits, as shown on the peer's Peers page or by its command handover admin identity."</p>
                    <FieldError id="add-fingerprint-error" message=msg("fingerprint")/>
                </div>
                <div>
                    <label for="add-auto-accept" class="block text-sm font-medium text-slate-700">"Auto-accept policy"</label>
                    <textarea id="add-auto-accept" name="auto_accept" rows="2" spellcheck="false"
                        aria-invalid=invalid("auto_accept") aria-describedby="add-auto-accept-hint add-auto-accept-error" class=format!("{FIELD} font-mono")></textarea>
                    <p id="add-auto-accept-hint" class="mt-1 text-xs text-slate-500">{POLICY_HINT}</p>
                    <FieldError id="add-auto-accept-error" message=msg("auto_accept")/>
                </div>
                <button type="submit" class=BUTTON prop:disabled=move || add.pending().get()>"Add peer"</button>
            </ActionForm>
        </section>
    }
}

/// The result of the last connection test, or that one is running.
#[component]
fn TestNotice(test: ServerAction<TestPeer>) -> impl IntoView {
    let report = move || test.value().get().and_then(|r| r.ok());
    move || {
        if test.pending().get() {
            return Some(view! {
                <div role="status" class="rounded-md border border-slate-200 bg-white px-4 py-3 text-sm text-slate-600">
                    "Testing the connection…"
                </div>
            }.into_any());
        }
        report().map(|r: ConnectionReport| {
            let text = format!("{}: {}", r.server_id, r.message);
            if r.ok {
                view! {
                    <div role="status" class="rounded-md border border-emerald-200 bg-emerald-50 px-4 py-3 text-sm text-emerald-800">{text}</div>
                }.into_any()
            } else {
                view! {
                    <div role="alert" class="rounded-md border border-red-200 bg-red-50 px-4 py-3 text-sm text-red-800">{text}</div>
                }.into_any()
            }
        })
    }
}

/// `ab12cd34…ef56` for a 64-digit fingerprint.
fn short(fingerprint: &str) -> String {
    if fingerprint.len() > 16 && fingerprint.is_ascii() {
        format!(
            "{}…{}",
            &fingerprint[..8],
            &fingerprint[fingerprint.len() - 4..]
        )
    } else {
        fingerprint.to_owned()
    }
}

#[component]
fn PeerTable(
    peers: Vec<PeerRow>,
    can_edit: bool,
    update: ServerAction<UpdatePeer>,
    remove: ServerAction<RemovePeer>,
    test: ServerAction<TestPeer>,
    edited: ReadSignal<Option<String>>,
    update_error: Signal<Option<AppError>>,
) -> impl IntoView {
    view! {
        <div class="overflow-x-auto rounded-lg border border-slate-200 bg-white shadow-sm">
            <table class="min-w-full divide-y divide-slate-200 text-sm">
                <thead class="bg-slate-50 text-left text-xs font-semibold uppercase tracking-wide text-slate-500">
                    <tr>
                        <th scope="col" class="px-4 py-3">"ServerID"</th>
                        <th scope="col" class="px-4 py-3">"Peer URL"</th>
                        <th scope="col" class="px-4 py-3">"DM URL"</th>
                        <th scope="col" class="px-4 py-3">"Fingerprint"</th>
                        <th scope="col" class="px-4 py-3">"Auto-accept"</th>
                        <th scope="col" class="px-4 py-3">"Added / updated"</th>
                        {can_edit.then(|| view! { <th scope="col" class="px-4 py-3"><span class="sr-only">"Actions"</span></th> })}
                    </tr>
                </thead>
                <tbody class="divide-y divide-slate-100">
                    {peers
                        .into_iter()
                        .enumerate()
                        .map(|(i, p)| view! { <PeerRowView i p can_edit update remove test edited update_error/> })
                        .collect_view()}
                </tbody>
            </table>
        </div>
    }
}

#[component]
fn PeerRowView(
    i: usize,
    p: PeerRow,
    can_edit: bool,
    update: ServerAction<UpdatePeer>,
    remove: ServerAction<RemovePeer>,
    test: ServerAction<TestPeer>,
    edited: ReadSignal<Option<String>>,
    update_error: Signal<Option<AppError>>,
) -> impl IntoView {
    let sid = p.server_id.clone();
    let actions = can_edit.then(|| {
        let (test_id, remove_id) = (sid.clone(), sid.clone());
        let test_name = format!(" to {sid}");
        let remove_name = format!(" {sid}");
        let remove_text = format!(
            "Stop trusting {sid}? Its connections are refused from now on, and delegations with it can no longer be made."
        );
        let remove_button = format!("Yes, remove {sid}");
        view! {
            <td class="px-4 py-3 text-right align-top">
                <div class="flex flex-col items-end gap-2">
                    <ActionForm action=test>
                        <input type="hidden" name="server_id" value=test_id/>
                        <button type="submit" class=format!("{BUTTON_QUIET} whitespace-nowrap") prop:disabled=move || test.pending().get()>
                            "Test connection" <span class="sr-only">{test_name}</span>
                        </button>
                    </ActionForm>
                    <EditPeer i p=p.clone() update edited update_error/>
                    <details class="text-left">
                        <summary class=SUMMARY>"Remove…" <span class="sr-only">{remove_name}</span></summary>
                        <div class="mt-2 w-72 space-y-3 rounded-md border border-red-200 bg-white p-4 text-sm shadow-lg">
                            <p>{remove_text}</p>
                            <ActionForm action=remove>
                                <input type="hidden" name="server_id" value=remove_id/>
                                <button type="submit" class=BUTTON_DANGER>{remove_button}</button>
                            </ActionForm>
                        </div>
                    </details>
                </div>
            </td>
        }
    });
    view! {
        <tr>
            <th scope="row" class="px-4 py-3 text-left align-top font-medium text-slate-900">{p.server_id.clone()}</th>
            <td class="break-all px-4 py-3 align-top font-mono text-xs">{p.url.clone()}</td>
            <td class="break-all px-4 py-3 align-top font-mono text-xs">{p.dm_url.clone()}</td>
            <td class="px-4 py-3 align-top">
                <code class="whitespace-nowrap font-mono text-xs" title=p.fingerprint.clone()>{short(&p.fingerprint)}</code>
                <span class="sr-only">{format!(" (full: {})", p.fingerprint)}</span>
            </td>
            <td class="px-4 py-3 align-top text-slate-600">
                {match p.policy_summary.clone() {
                    Some(s) => view! { <span>{s}</span> }.into_any(),
                    None => view! { <span class="text-slate-400">"none: a person approves"</span> }.into_any(),
                }}
            </td>
            <td class="whitespace-nowrap px-4 py-3 align-top text-slate-500">
                <Time ms=p.created_at/>
                {(p.updated_at != p.created_at).then(|| view! { <br/><Time ms=p.updated_at/> })}
            </td>
            {actions}
        </tr>
    }
}

#[component]
fn EditPeer(
    i: usize,
    p: PeerRow,
    update: ServerAction<UpdatePeer>,
    edited: ReadSignal<Option<String>>,
    update_error: Signal<Option<AppError>>,
) -> impl IntoView {
    let id = move |what: &str| format!("edit-{i}-{what}");
    let sid = p.server_id.clone();
    let edit_name = format!(" {sid}");
    let save_name = format!(" to {sid}");
    let error = Signal::derive(move || {
        (edited.get().as_deref() == Some(sid.as_str()))
            .then(|| update_error.get())
            .flatten()
    });
    let msg = move |field: &'static str| Signal::derive(move || field_message(error.get(), field));
    let invalid =
        move |field: &'static str| move || field_message(error.get(), field).is_some().to_string();
    // Keep the form open while it shows an error for this peer.
    let open = move || error.get().is_some();
    view! {
        <details class="text-left" prop:open=open>
            <summary class=SUMMARY>"Edit" <span class="sr-only">{edit_name}</span></summary>
            <div class="mt-2 w-96 rounded-md border border-slate-200 bg-white p-4 shadow-lg">
                <ActionForm action=update attr:class="space-y-3">
                    <input type="hidden" name="server_id" value=p.server_id.clone()/>
                    <div>
                        <label for=id("url") class="block text-sm font-medium text-slate-700">"Peer URL"</label>
                        <input id=id("url") name="url" type="text" required value=p.url.clone()
                            aria-invalid=invalid("url") aria-describedby=id("url-error") class=FIELD/>
                        <FieldError id=id("url-error") message=msg("url")/>
                    </div>
                    <div>
                        <label for=id("dm-url") class="block text-sm font-medium text-slate-700">"DM URL"</label>
                        <input id=id("dm-url") name="dm_url" type="text" required value=p.dm_url.clone()
                            aria-invalid=invalid("dm_url") aria-describedby=id("dm-url-error") class=FIELD/>
                        <FieldError id=id("dm-url-error") message=msg("dm_url")/>
                    </div>
                    <div>
                        <label for=id("fingerprint") class="block text-sm font-medium text-slate-700">"Fingerprint"</label>
                        <input id=id("fingerprint") name="fingerprint" type="text" required spellcheck="false" value=p.fingerprint.clone()
                            aria-invalid=invalid("fingerprint") aria-describedby=id("fingerprint-error") class=format!("{FIELD} font-mono text-xs")/>
                        <FieldError id=id("fingerprint-error") message=msg("fingerprint")/>
                    </div>
                    <div>
                        <label for=id("auto-accept") class="block text-sm font-medium text-slate-700">"Auto-accept policy"</label>
                        <textarea id=id("auto-accept") name="auto_accept" rows="3" spellcheck="false"
                            aria-invalid=invalid("auto_accept") aria-describedby=format!("{} {}", id("auto-accept-hint"), id("auto-accept-error"))
                            class=format!("{FIELD} font-mono text-xs")>
                            {p.auto_accept.clone().unwrap_or_default()}
                        </textarea>
                        <p id=id("auto-accept-hint") class="mt-1 text-xs text-slate-500">{POLICY_HINT}</p>
                        <FieldError id=id("auto-accept-error") message=msg("auto_accept")/>
                    </div>
                    <button type="submit" class=BUTTON prop:disabled=move || update.pending().get()>
                        "Save changes" <span class="sr-only">{save_name}</span>
                    </button>
                </ActionForm>
            </div>
        </details>
    }
}
