//! `devices.csv`: the fleet in the server's import format.

use handover_dm::auth::AuthType;

/// The exact header of the import format.
pub const HEADER: &str = "devid,auth,client_name,client_secret,client_nonce,server_name,server_secret,server_nonce,push_address";

/// One row of `devices.csv`. Nonces are base64 of their raw bytes (A.4).
/// Holds secrets: no `Debug` that prints them.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub devid: String,
    pub auth: AuthType,
    pub client_name: String,
    pub client_secret: String,
    pub client_nonce: String,
    pub server_name: String,
    pub server_secret: String,
    pub server_nonce: String,
    pub push_address: String,
}

impl std::fmt::Debug for DeviceRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceRecord")
            .field("devid", &self.devid)
            .field("auth", &self.auth)
            .field("push_address", &self.push_address)
            .finish_non_exhaustive()
    }
}

/// The CSV name of an auth scheme.
pub fn auth_name(a: AuthType) -> &'static str {
    match a {
        AuthType::Md5 => "md5",
        AuthType::Hmac => "hmac",
        AuthType::Basic => "basic",
    }
}

/// The auth scheme of a CSV name.
pub fn parse_auth(s: &str) -> Option<AuthType> {
    match s {
        "md5" => Some(AuthType::Md5),
        "hmac" => Some(AuthType::Hmac),
        "basic" => Some(AuthType::Basic),
        _ => None,
    }
}

fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Writes the header and one line per record.
pub fn write(records: &[DeviceRecord]) -> String {
    let mut out = String::with_capacity(64 + records.len() * 200);
    out.push_str(HEADER);
    out.push('\n');
    for r in records {
        let cols = [
            r.devid.as_str(),
            auth_name(r.auth),
            &r.client_name,
            &r.client_secret,
            &r.client_nonce,
            &r.server_name,
            &r.server_secret,
            &r.server_nonce,
            &r.push_address,
        ];
        let line: Vec<String> = cols.iter().map(|c| field(c)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

/// Splits one CSV line (RFC 4180 quoting, no embedded newlines).
fn split_line(line: &str) -> Vec<String> {
    let mut cols = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cur.is_empty() => quoted = true,
            (',', false) => cols.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    cols.push(cur);
    cols
}

/// Reads a `devices.csv`; the header must be exactly [`HEADER`].
pub fn parse(text: &str) -> anyhow::Result<Vec<DeviceRecord>> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default().trim_end_matches('\r');
    anyhow::ensure!(
        header == HEADER,
        "devices.csv: unexpected header {header:?}"
    );
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let c = split_line(line);
        anyhow::ensure!(
            c.len() == 9,
            "devices.csv line {}: {} columns",
            i + 2,
            c.len()
        );
        let auth = parse_auth(&c[1])
            .ok_or_else(|| anyhow::anyhow!("devices.csv line {}: auth {:?}", i + 2, c[1]))?;
        let mut c = c.into_iter();
        let mut next = || c.next().expect("nine columns");
        let devid = next();
        next();
        out.push(DeviceRecord {
            devid,
            auth,
            client_name: next(),
            client_secret: next(),
            client_nonce: next(),
            server_name: next(),
            server_secret: next(),
            server_nonce: next(),
            push_address: next(),
        });
    }
    Ok(out)
}

/// `%`-encodes everything but the RFC 3986 unreserved characters, for the
/// DevId in a push URL path.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_quoting() {
        let r = DeviceRecord {
            devid: "IMEI:353325100000018".into(),
            auth: AuthType::Hmac,
            client_name: "a,b".into(),
            client_secret: "s\"x".into(),
            client_nonce: "bm9uY2U=".into(),
            server_name: "handover.localhost".into(),
            server_secret: "t".into(),
            server_nonce: "bm9uY2U=".into(),
            push_address: "http://127.0.0.1:1/push/IMEI%3A353325100000018".into(),
        };
        let text = write(std::slice::from_ref(&r));
        assert!(text.starts_with(HEADER));
        assert_eq!(parse(&text).unwrap(), vec![r]);
    }

    #[test]
    fn encodes_devid() {
        assert_eq!(url_encode("IMEI:35 1"), "IMEI%3A35%201");
    }
}
