//! Events pushed by the server (`/live/…`, Server-Sent Events): a page reads
//! its data again when one arrives, without reloading or polling.

use crate::api::live::Pushed;
use leptos::prelude::*;

/// What a page needs from the stream: a counter that moves on every event
/// (track it to read again) and the last event, for the "live" line.
#[derive(Clone, Copy)]
pub struct Live {
    pub tick: ReadSignal<u64>,
    pub last: ReadSignal<Option<Pushed>>,
    pub connected: ReadSignal<bool>,
}

/// The page's numeric `:id` route parameter (0 when it is not a number).
pub fn use_id_param() -> Memo<i64> {
    let params = leptos_router::hooks::use_params_map();
    Memo::new(move |_| {
        params
            .read()
            .get("id")
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(0)
    })
}

/// Listens to `url` while the calling component lives (in the browser only).
pub fn use_live(url: Signal<String>) -> Live {
    let (tick, set_tick) = signal(0u64);
    let (last, set_last) = signal(None::<Pushed>);
    let (connected, set_connected) = signal(false);
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::closure::Closure;
        use wasm_bindgen::{JsCast, JsValue};
        // The open EventSource and its handlers, kept in the browser thread.
        type Open = (JsValue, Vec<Closure<dyn FnMut(JsValue)>>);
        let current: StoredValue<Option<Open>, LocalStorage> = StoredValue::new_local(None);
        let close = move || {
            if let Some(Some((es, _closures))) = current.try_update_value(|c| c.take()) {
                if let Ok(f) = js_sys::Reflect::get(&es, &"close".into()) {
                    if let Ok(f) = f.dyn_into::<js_sys::Function>() {
                        let _ = f.call0(&es);
                    }
                }
            }
        };
        Effect::new(move |_| {
            let url = url.get();
            close();
            let Some(ctor) = js_sys::Reflect::get(&js_sys::global(), &"EventSource".into())
                .ok()
                .and_then(|c| c.dyn_into::<js_sys::Function>().ok())
            else {
                return;
            };
            let Ok(es) = js_sys::Reflect::construct(&ctor, &js_sys::Array::of1(&url.into())) else {
                return;
            };
            let on_message = Closure::<dyn FnMut(JsValue)>::new(move |ev: JsValue| {
                let data = js_sys::Reflect::get(&ev, &"data".into())
                    .ok()
                    .and_then(|d| d.as_string())
                    .unwrap_or_default();
                if let Ok(p) = serde_json::from_str::<Pushed>(&data) {
                    set_last.set(Some(p));
                }
                set_tick.update(|t| *t += 1);
            });
            let on_open = Closure::<dyn FnMut(JsValue)>::new(move |_| {
                set_connected.set(true);
                // Events may have passed while connecting: read again.
                set_tick.update(|t| *t += 1);
            });
            let on_error = Closure::<dyn FnMut(JsValue)>::new(move |_| set_connected.set(false));
            let _ = js_sys::Reflect::set(&es, &"onmessage".into(), on_message.as_ref());
            let _ = js_sys::Reflect::set(&es, &"onopen".into(), on_open.as_ref());
            let _ = js_sys::Reflect::set(&es, &"onerror".into(), on_error.as_ref());
            // A missed event ("lagged") also means: read again.
            if let Ok(add) = js_sys::Reflect::get(&es, &"addEventListener".into())
                .and_then(|f| f.dyn_into::<js_sys::Function>())
            {
                let _ = add.call2(&es, &"lagged".into(), on_message.as_ref());
            }
            current.set_value(Some((es, vec![on_message, on_open, on_error])));
        });
        on_cleanup(close);
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (url, set_tick, set_last, set_connected);
    Live {
        tick,
        last,
        connected,
    }
}

/// The "live" line: whether the stream is open and the last event.
#[component]
pub fn LiveLine(live: Live) -> impl IntoView {
    let at = move || {
        live.last
            .get()
            .map(|p| p.at.to_string())
            .unwrap_or_default()
    };
    view! {
        <p data-testid="live" data-at=at class="flex items-center gap-2 text-xs text-slate-500" aria-live="polite">
            <span class=move || if live.connected.get() {
                "inline-block h-2 w-2 rounded-full bg-emerald-500"
            } else {
                "inline-block h-2 w-2 rounded-full bg-slate-300"
            } aria-hidden="true"></span>
            {move || match (live.connected.get(), live.last.get()) {
                (false, _) => "Connecting to live updates…".to_owned(),
                (true, None) => "Live: changes appear as they happen.".to_owned(),
                (true, Some(p)) => format!("Live · last event: {} {}", p.kind, p.text),
            }}
        </p>
    }
}
