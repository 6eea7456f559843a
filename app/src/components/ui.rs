//! Small building blocks with one look across the portal.

use crate::api::AppError;
use leptos::prelude::*;
use leptos_router::components::A;

/// A red notice for a failed action, announced to screen readers.
#[component]
pub fn ErrorNotice(#[prop(into)] error: Signal<Option<AppError>>) -> impl IntoView {
    move || {
        error.get().map(|e| {
            view! {
                <div role="alert" class="rounded-md border border-red-200 bg-red-50 px-4 py-3 text-sm text-red-800">
                    {e.to_string()}
                </div>
            }
        })
    }
}

/// A green notice for a completed action.
#[component]
pub fn SuccessNotice(#[prop(into)] message: Signal<Option<String>>) -> impl IntoView {
    move || {
        message.get().map(|m| {
            view! {
                <div role="status" class="rounded-md border border-emerald-200 bg-emerald-50 px-4 py-3 text-sm text-emerald-800">
                    {m}
                </div>
            }
        })
    }
}

/// A page heading with an optional line under it.
#[component]
pub fn PageHeader(
    #[prop(into)] title: String,
    #[prop(optional, into)] subtitle: Option<String>,
) -> impl IntoView {
    view! {
        <header class="mb-6">
            <h1 class="text-2xl font-semibold tracking-tight text-slate-900">{title}</h1>
            {subtitle.map(|s| view! { <p class="mt-1 text-sm text-slate-500">{s}</p> })}
        </header>
    }
}

/// A column header that sorts the table by its column: a link to `href`
/// (the same table in this column's order), `aria-sort` and an arrow when
/// it is the column sorted by (`order`: descending or not).
#[component]
pub fn SortHeader(label: &'static str, href: String, order: Option<bool>) -> impl IntoView {
    let (aria_sort, arrow) = match order {
        None => ("none", ""),
        Some(false) => ("ascending", " ↑"),
        Some(true) => ("descending", " ↓"),
    };
    view! {
        <th scope="col" class="px-4 py-3" aria-sort=aria_sort>
            <A href=href attr:class="hover:text-slate-800">{label}{arrow}</A>
        </th>
    }
}

/// "← Previous", where we are, "Next →" under a paged table.
#[component]
pub fn Pager(
    prev: Option<String>,
    next: Option<String>,
    #[prop(into)] text: String,
) -> impl IntoView {
    const LINK: &str = "rounded-md border border-slate-300 bg-white px-3 py-1.5 text-sm font-medium text-slate-700 hover:bg-slate-50";
    view! {
        <nav aria-label="Pagination" class="mt-4 flex items-center justify-between text-sm">
            {match prev {
                Some(href) => view! { <A href=href attr:class=LINK attr:rel="prev">"← Previous"</A> }.into_any(),
                None => view! { <span></span> }.into_any(),
            }}
            <span class="text-slate-500">{text}</span>
            {match next {
                Some(href) => view! { <A href=href attr:class=LINK attr:rel="next">"Next →"</A> }.into_any(),
                None => view! { <span></span> }.into_any(),
            }}
        </nav>
    }
}

/// Formats unix milliseconds as `YYYY-MM-DD HH:MM:SS` UTC; the browser
/// replaces it with local time after hydration (see [`Time`]).
pub fn utc_text(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

// Howard Hinnant's days-to-civil algorithm: the date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A point in time: local time in the browser, UTC on hover.
#[component]
pub fn Time(ms: i64) -> impl IntoView {
    local_time(ms, false)
}

/// A time of day (`HH:MM:SS`): local time in the browser, the full UTC
/// time on hover. For sentences such as "notified 12:03:41".
#[component]
pub fn Clock(ms: i64) -> impl IntoView {
    local_time(ms, true)
}

fn local_time(ms: i64, clock_only: bool) -> impl IntoView {
    let utc = utc_text(ms);
    let first = if clock_only {
        format!("{} UTC", &utc[11..19])
    } else {
        utc.clone()
    };
    let (text, set_text) = signal(first);
    Effect::new(move |_| {
        #[cfg(feature = "hydrate")]
        {
            let date = js_sys_date_local(ms);
            set_text.set(if clock_only {
                date[11..].to_owned()
            } else {
                date
            });
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (set_text, clock_only);
    });
    view! { <time datetime=ms.to_string() title=utc>{text}</time> }
}

/// A sentence with times of day in it; each time in the reader's zone.
#[component]
pub fn WordsView(words: crate::api::live::Words) -> impl IntoView {
    use crate::api::live::Word;
    words
        .0
        .into_iter()
        .map(|w| match w {
            Word::Text(t) => t.into_any(),
            Word::Clock(ms) => view! { <Clock ms/> }.into_any(),
        })
        .collect_view()
}

#[cfg(feature = "hydrate")]
fn js_sys_date_local(ms: i64) -> String {
    let d = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64));
    let pad = |n: u32| format!("{n:02}");
    format!(
        "{}-{}-{} {}:{}:{}",
        d.get_full_year(),
        pad(d.get_month() + 1),
        pad(d.get_date()),
        pad(d.get_hours()),
        pad(d.get_minutes()),
        pad(d.get_seconds())
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_text_formats() {
        assert_eq!(super::utc_text(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            super::utc_text(1_795_773_600_000),
            "2026-11-27 10:00:00 UTC"
        );
    }
}
