use crate::api::users::{list_users, CreateUser, ResetPassword, SetDisabled, SetRoles, UserRow};
use crate::api::Role;
use crate::components::ui::{ErrorNotice, PageHeader, SuccessNotice, Time};
use leptos::prelude::*;

const FIELD: &str = "mt-1 block w-full rounded-md border border-slate-300 px-3 py-2 text-sm focus:border-indigo-500 focus:outline-none focus:ring-1 focus:ring-indigo-500";
const BUTTON: &str = "rounded-md bg-indigo-600 px-3 py-2 text-sm font-medium text-white hover:bg-indigo-500 disabled:opacity-60";
const BUTTON_QUIET: &str = "rounded-md border border-slate-300 bg-white px-3 py-1.5 text-sm text-slate-700 hover:bg-slate-50";

/// Users (admin): list, create, roles, disable, reset password.
#[component]
pub fn Users() -> impl IntoView {
    let create = ServerAction::<CreateUser>::new();
    let set_roles = ServerAction::<SetRoles>::new();
    let set_disabled = ServerAction::<SetDisabled>::new();
    let reset = ServerAction::<ResetPassword>::new();
    let users = Resource::new(
        move || {
            (
                create.version().get(),
                set_roles.version().get(),
                set_disabled.version().get(),
                reset.version().get(),
            )
        },
        |_| list_users(),
    );
    let last_error = Signal::derive(move || {
        [
            create.value().get(),
            set_roles.value().get(),
            set_disabled.value().get(),
            reset.value().get(),
        ]
        .into_iter()
        .flatten()
        .find_map(|r| r.err())
    });
    let created = Signal::derive(move || match create.value().get() {
        Some(Ok(())) => Some("User created.".to_owned()),
        _ => None,
    });
    view! {
        <leptos_meta::Title text="Users"/>
        <PageHeader title="Users" subtitle="Accounts of this authority's portal and the roles they hold."/>
        <div class="grid gap-8 lg:grid-cols-3">
            <section class="lg:col-span-2" aria-labelledby="users-heading">
                <h2 id="users-heading" class="sr-only">"All users"</h2>
                <div class="mb-4 space-y-2">
                    <ErrorNotice error=last_error/>
                </div>
                <Suspense fallback=|| view! { <p class="text-sm text-slate-500">"Loading users…"</p> }>
                    {move || Suspend::new(async move {
                        match users.await {
                            Ok(list) if list.is_empty() => view! {
                                <p class="rounded-lg border border-dashed border-slate-300 bg-white p-6 text-sm text-slate-500">
                                    "No users yet. Create the first one with the form."
                                </p>
                            }.into_any(),
                            Ok(list) => view! { <UserTable list set_roles set_disabled reset/> }.into_any(),
                            Err(e) => view! { <ErrorNotice error=Signal::derive(move || Some(e.clone()))/> }.into_any(),
                        }
                    })}
                </Suspense>
            </section>
            <section aria-labelledby="create-heading" class="rounded-lg border border-slate-200 bg-white p-5 shadow-sm">
                <h2 id="create-heading" class="mb-4 font-medium">"Create a user"</h2>
                <ActionForm action=create attr:class="space-y-4">
                    <SuccessNotice message=created/>
                    <div>
                        <label for="new-name" class="block text-sm font-medium text-slate-700">"User name"</label>
                        <input id="new-name" name="name" type="text" required maxlength="64" pattern="[A-Za-z0-9._@-]+"
                            title="Letters, digits and . _ @ -" autocomplete="off" class=FIELD/>
                        <p class="mt-1 text-xs text-slate-500">"Letters, digits and . _ @ - ; at most 64."</p>
                    </div>
                    <div>
                        <label for="new-password" class="block text-sm font-medium text-slate-700">"Initial password"</label>
                        <input id="new-password" name="password" type="password" required minlength="12" autocomplete="new-password" class=FIELD/>
                        <p class="mt-1 text-xs text-slate-500">"At least 12 characters. Give it to the person privately."</p>
                    </div>
                    <RoleChoices prefix="new" checked=vec![]/>
                    <button type="submit" class=BUTTON prop:disabled=move || create.pending().get()>"Create user"</button>
                </ActionForm>
            </section>
        </div>
    }
}

#[component]
fn RoleChoices(#[prop(into)] prefix: String, checked: Vec<Role>) -> impl IntoView {
    view! {
        <fieldset>
            <legend class="text-sm font-medium text-slate-700">"Roles"</legend>
            <div class="mt-2 space-y-1">
                {Role::ALL
                    .into_iter()
                    .map(|r| {
                        let id = format!("{prefix}-role-{}", r.as_str());
                        view! {
                            <div class="flex items-start gap-2">
                                <input id=id.clone() type="checkbox" name="roles[]" value=r.as_str() checked=checked.contains(&r)
                                    class="mt-1 h-4 w-4 rounded border-slate-300 text-indigo-600"/>
                                <label for=id class="text-sm">
                                    <span class="font-medium">{r.as_str()}</span>
                                    <span class="block text-xs text-slate-500">{r.description()}</span>
                                </label>
                            </div>
                        }
                    })
                    .collect_view()}
            </div>
        </fieldset>
    }
}

#[component]
fn UserTable(
    list: Vec<UserRow>,
    set_roles: ServerAction<SetRoles>,
    set_disabled: ServerAction<SetDisabled>,
    reset: ServerAction<ResetPassword>,
) -> impl IntoView {
    view! {
        <div class="overflow-x-auto rounded-lg border border-slate-200 bg-white shadow-sm">
            <table class="min-w-full divide-y divide-slate-200 text-sm">
                <thead class="bg-slate-50 text-left text-xs font-semibold uppercase tracking-wide text-slate-500">
                    <tr>
                        <th scope="col" class="px-4 py-3">"User"</th>
                        <th scope="col" class="px-4 py-3">"Roles"</th>
                        <th scope="col" class="px-4 py-3">"Status"</th>
                        <th scope="col" class="px-4 py-3">"Last sign-in"</th>
                        <th scope="col" class="px-4 py-3"><span class="sr-only">"Actions"</span></th>
                    </tr>
                </thead>
                <tbody class="divide-y divide-slate-100">
                    {list
                        .into_iter()
                        .map(|u| view! { <UserRowView u set_roles set_disabled reset/> })
                        .collect_view()}
                </tbody>
            </table>
        </div>
    }
}

#[component]
fn UserRowView(
    u: UserRow,
    set_roles: ServerAction<SetRoles>,
    set_disabled: ServerAction<SetDisabled>,
    reset: ServerAction<ResetPassword>,
) -> impl IntoView {
    let prefix = format!("u-{}", u.name);
    let pw_id = format!("{prefix}-pw");
    let (name1, name2, name3) = (u.name.clone(), u.name.clone(), u.name.clone());
    let roles_text = if u.roles.is_empty() {
        "none".to_owned()
    } else {
        u.roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    view! {
        <tr class=if u.disabled { "bg-slate-50 text-slate-400" } else { "" }>
            <th scope="row" class="px-4 py-3 text-left font-medium text-slate-900">{u.name.clone()}</th>
            <td class="px-4 py-3">{roles_text}</td>
            <td class="px-4 py-3">
                {if u.disabled {
                    view! { <span class="rounded-full bg-slate-200 px-2 py-0.5 text-xs text-slate-600">"disabled"</span> }.into_any()
                } else {
                    view! { <span class="rounded-full bg-emerald-100 px-2 py-0.5 text-xs text-emerald-800">"active"</span> }.into_any()
                }}
            </td>
            <td class="px-4 py-3 text-slate-500">
                {match u.last_sign_in {
                    Some(ms) => view! { <Time ms/> }.into_any(),
                    None => view! { "never" }.into_any(),
                }}
            </td>
            <td class="px-4 py-3 text-right">
                <details class="inline-block text-left">
                    <summary class="cursor-pointer text-sm text-indigo-600 hover:text-indigo-500">
                        "Manage" <span class="sr-only">{format!(" {}", u.name)}</span>
                    </summary>
                    <div class="mt-3 w-72 space-y-4 rounded-md border border-slate-200 bg-white p-4 shadow-lg">
                        <ActionForm action=set_roles attr:class="space-y-2">
                            <input type="hidden" name="name" value=name1/>
                            <RoleChoices prefix=prefix checked=u.roles.clone()/>
                            <button type="submit" class=BUTTON_QUIET>"Save roles"</button>
                        </ActionForm>
                        <ActionForm action=reset attr:class="space-y-2">
                            <input type="hidden" name="name" value=name2/>
                            <label for=pw_id.clone() class="block text-sm font-medium text-slate-700">"New password"</label>
                            <input id=pw_id name="password" type="password" required minlength="12" autocomplete="new-password" class=FIELD/>
                            <button type="submit" class=BUTTON_QUIET>"Reset password"</button>
                        </ActionForm>
                        <ActionForm action=set_disabled>
                            <input type="hidden" name="name" value=name3/>
                            <input type="hidden" name="disabled" value=(!u.disabled).to_string()/>
                            <button type="submit" class=BUTTON_QUIET>
                                {if u.disabled { "Enable account" } else { "Disable account" }}
                            </button>
                        </ActionForm>
                    </div>
                </details>
            </td>
        </tr>
    }
}
