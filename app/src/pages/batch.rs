//! One batch of delegations, live (viewer): progress and each device's
//! outcome, sorted by any column and paged (order and page in the URL).

use crate::api::devices::encode_component;
use crate::api::live::{get_batch_live, sort_batch, BatchSort, BATCH_PER_PAGE};
use crate::api::AppError;
use crate::components::live::{use_id_param, use_live, LiveLine};
use crate::components::ui::{ErrorNotice, PageHeader, Pager, SortHeader, Time};
use crate::pages::delegation::state_class;
use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_query_map;

/// The order and page of the batch page, as in its URL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct View {
    sort: BatchSort,
    desc: bool,
    page: usize,
}

impl View {
    fn href(self, id: i64) -> String {
        let mut q = Vec::new();
        if self.sort != BatchSort::default() {
            q.push(format!("sort={}", encode_component(self.sort.as_str())));
        }
        if self.desc {
            q.push("dir=desc".to_owned());
        }
        if self.page > 1 {
            q.push(format!("page={}", self.page));
        }
        if q.is_empty() {
            format!("/batches/{id}")
        } else {
            format!("/batches/{id}?{}", q.join("&"))
        }
    }
}

#[component]
pub fn Batch() -> impl IntoView {
    let id = use_id_param();
    let query = use_query_map();
    let view_of = Memo::new(move |_| {
        let q = query.read();
        View {
            sort: q
                .get("sort")
                .and_then(|s| BatchSort::parse(&s))
                .unwrap_or_default(),
            desc: q.get("dir").as_deref() == Some("desc"),
            page: q
                .get("page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(1)
                .max(1),
        }
    });
    let live = use_live(Signal::derive(move || {
        format!("/live/batches/{}", id.get())
    }));
    let data = Resource::new(
        move || (id.get(), live.tick.get()),
        |(id, _)| get_batch_live(id),
    );
    view! {
        <leptos_meta::Title text=move || format!("Batch {}", id.get())/>
        <div class="mb-6 flex flex-wrap items-start justify-between gap-4">
            <PageHeader title=format!("Batch {}", id.get_untracked()) subtitle="One request for several devices: each device is its own delegation."/>
            <LiveLine live/>
        </div>
        <Transition fallback=|| view! { <p class="text-sm text-slate-500">"Loading the batch…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(mut b) => {
                        let v = view_of.get();
                        let batch = b.id;
                        let total = b.rows.len();
                        let completed = b.rows.iter().filter(|r| r.state == "Completed").count();
                        let ended = b.rows.iter().filter(|r| r.state != "Completed" && r.ended()).count();
                        let running = total - completed - ended;
                        let pct = |n: usize| if total == 0 { 0.0 } else { n as f64 * 100.0 / total as f64 };
                        sort_batch(&mut b.rows, v.sort, v.desc);
                        let pages = total.div_ceil(BATCH_PER_PAGE).max(1);
                        let page = v.page.min(pages);
                        let shown: Vec<_> = b.rows.into_iter().skip((page - 1) * BATCH_PER_PAGE).take(BATCH_PER_PAGE).collect();
                        let header = move |sort: BatchSort| {
                            let active = v.sort == sort;
                            let href = View { sort, desc: active && !v.desc, page: 1 }.href(batch);
                            view! { <SortHeader label=sort.label() href order=active.then_some(v.desc)/> }
                        };
                        let prev = (page > 1).then(|| View { page: page - 1, ..v }.href(batch));
                        let next = (page < pages).then(|| View { page: page + 1, ..v }.href(batch));
                        view! {
                            <section aria-label="Progress" class="mb-6 rounded-lg border border-slate-200 bg-white p-5 shadow-sm">
                                <p class="mb-2 text-sm text-slate-700" data-testid="progress">
                                    {format!("{completed} completed · {ended} ended · {running} running · {total} in all")}
                                </p>
                                <div class="flex h-3 w-full overflow-hidden rounded-full bg-slate-100" role="progressbar"
                                    aria-valuemin="0" aria-valuemax=total aria-valuenow=completed + ended
                                    aria-valuetext=format!("{} of {total} finished", completed + ended)>
                                    <div class="bg-emerald-500" style=format!("width: {}%", pct(completed))></div>
                                    <div class="bg-slate-400" style=format!("width: {}%", pct(ended))></div>
                                    <div class="bg-amber-300" style=format!("width: {}%", pct(running))></div>
                                </div>
                            </section>
                            <div class="overflow-x-auto rounded-lg border border-slate-200 bg-white shadow-sm">
                                <table class="min-w-full divide-y divide-slate-200 text-sm">
                                    <caption class="sr-only">"Delegations of this batch"</caption>
                                    <thead class="bg-slate-50 text-left text-xs font-semibold uppercase tracking-wide text-slate-500">
                                        <tr>
                                            {header(BatchSort::Id)}
                                            {header(BatchSort::Device)}
                                            <th scope="col" class="px-4 py-3">"Peer"</th>
                                            {header(BatchSort::State)}
                                            <th scope="col" class="px-4 py-3">"Outcome"</th>
                                            {header(BatchSort::Ended)}
                                        </tr>
                                    </thead>
                                    <tbody class="divide-y divide-slate-100">
                                        {shown.into_iter().map(|r| view! {
                                            <tr data-devid=r.devid.clone()>
                                                <td class="px-4 py-2"><A href=format!("/delegations/{}", r.id) attr:class="text-indigo-700 hover:underline">{r.id}</A></td>
                                                <td class="px-4 py-2 font-mono text-xs">{r.devid.clone()}</td>
                                                <td class="px-4 py-2 font-mono text-xs">{r.peer.clone()}</td>
                                                <td class="px-4 py-2"><span class=state_class(&r.state)>{r.state.clone()}</span></td>
                                                <td class="px-4 py-2">{r.outcome.clone()}</td>
                                                <td class="whitespace-nowrap px-4 py-2">{r.ended_at.map(|ms| view! { <Time ms/> })}</td>
                                            </tr>
                                        }).collect_view()}
                                    </tbody>
                                </table>
                            </div>
                            {(pages > 1).then(|| view! { <Pager prev next text=format!("Page {page} of {pages}")/> })}
                        }.into_any()
                    }
                    Err(AppError::NotFound(_)) => view! { <p class="text-sm text-slate-500">"There is no such batch."</p> }.into_any(),
                    Err(e) => view! { <ErrorNotice error=Signal::derive(move || Some(e.clone()))/> }.into_any(),
                }
            })}
        </Transition>
    }
}
