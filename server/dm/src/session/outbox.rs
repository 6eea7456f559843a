//! Filling one outgoing message within the peer's `MaxMsgSize` (PROTOCOL
//! A.2): Statuses first, then as many commands as fit, and a large object
//! cut into chunks (`MoreData`, total `Size` on the first chunk).

use std::num::NonZeroU32;

use crate::syncml::{
    self, CmdRef, Command, Data, Encoding, Item, ItemCmd, LocRef, Message, Meta, Results, SyncHdr,
};
use crate::CmdId;

use super::JobId;

/// Smallest chunk worth a message of its own: below it the chunk waits for
/// the next message.
const MIN_CHUNK: usize = 128;

/// One message being filled (PROTOCOL A.2).
pub(crate) struct Packer {
    encoding: Encoding,
    max: Option<u64>,
    msg: Message,
    next_cmd: u32,
    /// At least the message's encoded length, once known: encoded whole at
    /// the first check against `max`, then grown by each command's bound
    /// (see [`syncml::command_len_bound`]), so that filling a message of
    /// `n` commands encodes it about once instead of `n` times.
    bound: Option<usize>,
}

impl Packer {
    /// A message with `hdr`, numbering commands from `next_cmd`.
    pub(crate) fn new(hdr: SyncHdr, encoding: Encoding, max: Option<u64>, next_cmd: u32) -> Self {
        Self {
            encoding,
            max,
            msg: Message {
                hdr,
                body: Vec::new(),
                final_: true,
            },
            next_cmd,
            bound: None,
        }
    }

    fn encoded_len(&self) -> usize {
        syncml::encode(self.encoding, &self.msg).len()
    }

    /// Whether the message is within `max`: known without encoding while
    /// the bound is, encoded whole (and the bound made exact) otherwise.
    fn fits(&mut self) -> bool {
        let Some(max) = self.max else { return true };
        if self.bound.is_some_and(|b| b as u64 <= max) {
            return true;
        }
        let len = self.encoded_len();
        self.bound = Some(len);
        len as u64 <= max
    }

    /// Adds `cmd` regardless of size (Statuses must go; A.2). Returns its CmdID.
    pub(crate) fn push(&mut self, mut cmd: Command) -> CmdId {
        self.next_cmd = super::number(std::slice::from_mut(&mut cmd), self.next_cmd);
        let id = cmd.cmd_id();
        if let Some(b) = &mut self.bound {
            *b += syncml::command_len_bound(self.encoding, &cmd);
        }
        self.msg.body.push(cmd);
        id
    }

    /// Takes back the last command pushed, with the CmdID and bound from
    /// before it.
    fn pop(&mut self, next_cmd: u32, bound: Option<usize>) -> Command {
        self.next_cmd = next_cmd;
        self.bound = bound;
        self.msg.body.pop().expect("pushed before")
    }

    /// Adds `cmd` when the message stays within `MaxMsgSize`; gives it back
    /// otherwise.
    pub(crate) fn try_push(&mut self, cmd: Command) -> Result<CmdId, Box<Command>> {
        let saved = (self.next_cmd, self.bound);
        let id = self.push(cmd);
        if self.fits() {
            Ok(id)
        } else {
            Err(Box::new(self.pop(saved.0, saved.1)))
        }
    }

    /// Adds the next chunk of `lo`, as big as fits; `None` when not even
    /// [`MIN_CHUNK`] bytes (or the rest) fit.
    pub(crate) fn push_chunk(&mut self, lo: &mut LargeOut) -> Option<CmdId> {
        let rest = lo.data.len() - lo.offset;
        let fits_len = |p: &mut Packer, len: usize| -> bool {
            let saved = (p.next_cmd, p.bound);
            p.push(lo.chunk(len));
            let ok = p.fits();
            p.pop(saved.0, saved.1);
            ok
        };
        let (mut lo_len, mut hi_len) = (0usize, rest);
        if fits_len(self, rest) {
            lo_len = rest;
        } else {
            while hi_len - lo_len > 1 {
                let mid = lo.boundary(lo_len + (hi_len - lo_len) / 2);
                if mid <= lo_len {
                    break;
                }
                if fits_len(self, mid) {
                    lo_len = mid;
                } else {
                    hi_len = mid;
                }
            }
        }
        if lo_len == 0 || (lo_len < MIN_CHUNK && lo_len < rest) {
            return None;
        }
        let id = self.push(lo.chunk(lo_len));
        lo.offset += lo_len;
        Some(id)
    }

    /// Whether `cmd` would fit in a message of its own: this header (and
    /// Cred), a Status like this message's first (the SyncHdr's), the
    /// Status of the peer's Alert 1222, and `cmd`.
    pub(crate) fn fits_alone(&self, cmd: &Command) -> bool {
        let Some(max) = self.max else { return true };
        let alert_status = super::status(
            self.msg.hdr.msg_id,
            CmdRef::Cmd(CmdId::new(1).expect("1 is not 0")),
            "Alert",
            crate::StatusCode::OK,
        );
        let probe = Message {
            hdr: self.msg.hdr.clone(),
            body: self
                .msg
                .body
                .first()
                .cloned()
                .into_iter()
                .chain([Command::Status(alert_status), cmd.clone()])
                .collect(),
            final_: true,
        };
        syncml::encode(self.encoding, &probe).len() as u64 <= max
    }

    /// How many commands (Statuses included) the message holds.
    pub(crate) fn len(&self) -> usize {
        self.msg.body.len()
    }

    /// True when the message holds a command other than a Status.
    pub(crate) fn has_commands(&self) -> bool {
        self.msg
            .body
            .iter()
            .any(|c| !matches!(c, Command::Status(_)))
    }

    /// Sets the header's `Cred` (A.4).
    pub(crate) fn set_cred(&mut self, cred: Option<syncml::Cred>) {
        self.msg.hdr.cred = cred;
        // The header's length changed: measured again when next needed.
        self.bound = None;
    }

    /// The finished message and the next free CmdID.
    pub(crate) fn finish(mut self, final_: bool) -> (Message, u32) {
        self.msg.final_ = final_;
        (self.msg, self.next_cmd)
    }
}

/// What a large object is sent as (PROTOCOL A.2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(crate) enum LargeKind {
    Add,
    Replace,
    /// Results of the Get `cmd_ref` of message `msg_ref`.
    Results {
        msg_ref: u32,
        cmd_ref: u32,
    },
}

/// A large object on its way out, cut into chunks (PROTOCOL A.2).
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(crate) struct LargeOut {
    pub kind: LargeKind,
    /// Target (Add/Replace) or Source (Results) of the item.
    pub loc: String,
    pub format: Option<String>,
    pub mime: Option<String>,
    pub data: Vec<u8>,
    /// Bytes already sent.
    pub offset: usize,
    pub job: Option<JobId>,
}

impl std::fmt::Debug for LargeOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LargeOut")
            .field("kind", &self.kind)
            .field("loc", &self.loc)
            .field("len", &self.data.len())
            .field("offset", &self.offset)
            .finish()
    }
}

impl LargeOut {
    /// True when every byte has gone out.
    pub(crate) fn done(&self) -> bool {
        self.offset >= self.data.len()
    }

    /// `len` moved back to a UTF-8 character boundary when the data is text,
    /// so every chunk of a text stays text.
    fn boundary(&self, len: usize) -> usize {
        match std::str::from_utf8(&self.data[self.offset..]) {
            Ok(s) => {
                let mut l = len.min(s.len());
                while l > 0 && !s.is_char_boundary(l) {
                    l -= 1;
                }
                l
            }
            Err(_) => len,
        }
    }

    /// The command carrying the `len` bytes after `offset`.
    fn chunk(&self, len: usize) -> Command {
        let end = self.offset + len;
        let first = self.offset == 0;
        let item = Item {
            meta: Some(Meta {
                format: self.format.clone(),
                type_: self.mime.clone(),
                size: first.then_some(self.data.len() as u64),
                ..Meta::default()
            }),
            data: Some(Data::from_bytes(self.data[self.offset..end].to_vec())),
            more_data: end < self.data.len(),
            ..Item::default()
        };
        let id = CmdId::new(1).expect("1 is not 0");
        match &self.kind {
            LargeKind::Add | LargeKind::Replace => {
                let item = Item {
                    target: Some(LocRef::uri(&self.loc)),
                    ..item
                };
                let cmd = ItemCmd::new(id, vec![item]);
                if self.kind == LargeKind::Add {
                    Command::Add(cmd)
                } else {
                    Command::Replace(cmd)
                }
            }
            LargeKind::Results { msg_ref, cmd_ref } => Command::Results(Results {
                cmd_id: id,
                msg_ref: NonZeroU32::new(*msg_ref),
                cmd_ref: CmdRef::new(*cmd_ref),
                meta: None,
                target_ref: None,
                source_ref: None,
                items: vec![Item {
                    source: Some(LocRef::uri(&self.loc)),
                    ..item
                }],
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StatusCode;

    fn id(n: u32) -> CmdId {
        CmdId::new(n).expect("not 0")
    }

    fn item(target: &str, data: &str) -> Item {
        Item {
            target: Some(LocRef::uri(target)),
            meta: Some(Meta::with_format_type("chr", "text/plain")),
            data: Some(Data::Text(data.into())),
            ..Item::default()
        }
    }

    /// Commands of every shape the packer meets, Meta (another WBXML code
    /// page) at the start, in the middle and at the end of them, and the
    /// commands of the captured real clients' messages.
    fn commands() -> Vec<Command> {
        let msg = NonZeroU32::new(1).expect("not 0");
        let mut v = vec![
            Command::Status(super::super::status(
                msg,
                CmdRef::Cmd(id(1)),
                "Alert",
                StatusCode::OK,
            )),
            Command::Get(ItemCmd::new(
                id(1),
                vec![Item {
                    target: Some(LocRef::uri("./DevInfo")),
                    ..Item::default()
                }],
            )),
            Command::Replace(ItemCmd::new(
                id(1),
                vec![item("./Vendor/Corp/Apps/Mail/Server", "mail2.corp.example")],
            )),
            Command::Add(ItemCmd {
                meta: Some(Meta::with_format_type("node", "text/plain")),
                ..ItemCmd::new(id(1), vec![item("./Vendor/Corp/Apps/New", "")])
            }),
            Command::Atomic(syncml::Container {
                cmd_id: id(1),
                no_resp: false,
                meta: None,
                commands: vec![
                    Command::Replace(ItemCmd::new(id(1), vec![item("./A", "x & <y>")])),
                    Command::Delete(ItemCmd::new(
                        id(1),
                        vec![Item {
                            target: Some(LocRef::uri("./B")),
                            ..Item::default()
                        }],
                    )),
                ],
            }),
        ];
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/real-clients");
        for client in ["libdmclient-xml", "libdmclient-wbxml", "hs20-osu-client"] {
            for e in std::fs::read_dir(dir.join(client)).expect("captured messages") {
                let bytes = std::fs::read(e.expect("an entry").path()).expect("readable");
                v.extend(syncml::decode(&bytes).expect("decodes").body);
            }
        }
        v
    }

    fn packer(encoding: Encoding, max: Option<u64>) -> Packer {
        let mut hdr = super::super::header(
            "1A",
            NonZeroU32::new(2).expect("not 0"),
            "IMEI:1",
            "https://dm.example/dm",
        );
        hdr.meta = Some(Meta {
            max_msg_size: Some(65_536),
            ..Meta::default()
        });
        Packer::new(hdr, encoding, max, 1)
    }

    // PROTOCOL A.2: what a command adds to a message is at most its bound
    // (exactly it in XML), wherever in the message it goes.
    #[test]
    fn a_command_adds_at_most_its_bound() {
        let cmds = commands();
        for encoding in [Encoding::Xml, Encoding::Wbxml] {
            let mut p = packer(encoding, None);
            for c in &cmds {
                let before = p.encoded_len();
                let bound = syncml::command_len_bound(encoding, c);
                p.msg.body.push(c.clone());
                let added = p.encoded_len() - before;
                match encoding {
                    Encoding::Xml => assert_eq!(added, bound),
                    Encoding::Wbxml => assert!(added <= bound, "{added} > {bound}"),
                }
            }
        }
    }

    // PROTOCOL A.2: with the bound, a message is filled exactly as when it
    // is encoded whole for every command: the same commands go, for every
    // MaxMsgSize from the header alone to all of them.
    #[test]
    fn filling_takes_what_encoding_whole_takes() {
        let cmds = commands();
        for encoding in [Encoding::Xml, Encoding::Wbxml] {
            let all = {
                let mut p = packer(encoding, None);
                cmds.iter().for_each(|c| {
                    p.push(c.clone());
                });
                p.encoded_len()
            };
            let empty = packer(encoding, None).encoded_len();
            for max in (empty..=all + 8).step_by(61) {
                let max = max as u64;
                let mut fast = packer(encoding, Some(max));
                let mut whole = packer(encoding, Some(max));
                for c in &cmds {
                    let took = fast.try_push(c.clone()).is_ok();
                    let saved = whole.next_cmd;
                    whole.push(c.clone());
                    let fits = whole.encoded_len() as u64 <= max;
                    if !fits {
                        whole.msg.body.pop();
                        whole.next_cmd = saved;
                    }
                    assert_eq!(took, fits, "{encoding:?} max {max}");
                }
                assert_eq!(fast.finish(true), whole.finish(true));
            }
        }
    }
}
