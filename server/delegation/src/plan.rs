//! DMS-1 plans: bootstrap Atomic (B.5), ACL update and revert (B.6).
