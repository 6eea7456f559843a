//! Audit event codes. They are forever: a code is never reused or renumbered,
//! and new events take new numbers in their domain's block.
//!
//! Blocks: 1xxx sign-in and access, 11xx users, 12xx the audit log itself,
//! 2xxx devices and DM commands, 3xxx delegations, 4xxx peers and identity.

macro_rules! events {
    ($($variant:ident = $code:literal, $name:literal;)*) => {
        /// A kind of audited event, with its stable numeric code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Event {
            $($variant,)*
        }

        impl Event {
            pub const ALL: &'static [Event] = &[$(Event::$variant,)*];

            pub fn code(self) -> i64 {
                match self {
                    $(Event::$variant => $code,)*
                }
            }

            /// The stable dotted name shown in the portal and exports.
            pub fn name(self) -> &'static str {
                match self {
                    $(Event::$variant => $name,)*
                }
            }

            pub fn from_code(code: i64) -> Option<Event> {
                match code {
                    $($code => Some(Event::$variant),)*
                    _ => None,
                }
            }

            pub fn from_name(name: &str) -> Option<Event> {
                match name {
                    $($name => Some(Event::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

events! {
    SignIn = 1001, "auth.sign_in";
    SignOut = 1002, "auth.sign_out";
    SignInFailed = 1003, "auth.sign_in_failed";
    LockedOut = 1004, "auth.locked_out";
    AccessDenied = 1005, "auth.access_denied";
    SetupAdminCreated = 1006, "auth.setup_admin_created";
    SignInThrottled = 1007, "auth.sign_in_throttled";
    UserCreated = 1101, "user.created";
    UserRolesChanged = 1102, "user.roles_changed";
    UserDisabled = 1103, "user.disabled";
    UserEnabled = 1104, "user.enabled";
    UserPasswordReset = 1105, "user.password_reset";
    AuditExported = 1201, "audit.exported";
    AuditVerified = 1202, "audit.verified";
    DevicesImported = 2001, "device.imported";
    DmAuthFailed = 2002, "device.auth_failed";
    DmAuthThrottled = 2003, "device.auth_throttled";
    DmAclChanged = 2004, "device.acl_changed";
    DmAccountChanged = 2005, "device.dmacc_changed";
    DeviceNotified = 2006, "device.notified";
    CommandQueued = 2007, "device.command_queued";
    DeviceEnrolled = 2008, "device.enrolled";
    DeviceNotifyFailed = 2009, "device.notify_failed";
    ApiTokenCreated = 2101, "api.token_created";
    DelegationRequested = 3001, "delegation.requested";
    DelegationApproved = 3002, "delegation.approved";
    DelegationRejected = 3003, "delegation.rejected";
    DelegationProposed = 3004, "delegation.proposed";
    DelegationAccepted = 3005, "delegation.accepted";
    DelegationMessageSent = 3010, "delegation.message_sent";
    DelegationMessageReceived = 3011, "delegation.message_received";
    DelegationSignatureVerified = 3012, "delegation.signature_verified";
    DelegationMessageRefused = 3013, "delegation.message_refused";
    DelegationStateChanged = 3020, "delegation.state_changed";
    DelegationDeviceWork = 3021, "delegation.device_work";
    DelegationCompleted = 3030, "delegation.completed";
    DelegationAborted = 3031, "delegation.aborted";
    DelegationReverted = 3032, "delegation.reverted";
    DelegationRevoked = 3033, "delegation.revoked";
    DelegationRelinquished = 3034, "delegation.relinquished";
    DelegationSecretsPurged = 3035, "delegation.secrets_purged";
    PeerAdded = 4001, "peer.added";
    PeerRemoved = 4002, "peer.removed";
    PeerUpdated = 4003, "peer.updated";
    IdentityCreated = 4010, "identity.created";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_are_unique_and_round_trip() {
        let mut codes = std::collections::HashSet::new();
        let mut names = std::collections::HashSet::new();
        for e in Event::ALL {
            assert!(codes.insert(e.code()), "{e:?} reuses a code");
            assert!(names.insert(e.name()), "{e:?} reuses a name");
            assert_eq!(Event::from_code(e.code()), Some(*e));
            assert_eq!(Event::from_name(e.name()), Some(*e));
        }
    }

    // Codes are forever: these must never change.
    #[test]
    fn codes_are_stable() {
        assert_eq!(Event::SignIn.code(), 1001);
        assert_eq!(Event::AccessDenied.code(), 1005);
        assert_eq!(Event::UserCreated.code(), 1101);
        assert_eq!(Event::DmAuthFailed.code(), 2002);
        assert_eq!(Event::DmAclChanged.code(), 2004);
        assert_eq!(Event::PeerAdded.code(), 4001);
        assert_eq!(Event::PeerRemoved.code(), 4002);
        assert_eq!(Event::PeerUpdated.code(), 4003);
        assert_eq!(Event::IdentityCreated.code(), 4010);
    }
}
