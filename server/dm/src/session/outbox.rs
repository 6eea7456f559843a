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
        }
    }

    fn encoded_len(&self) -> usize {
        syncml::encode(self.encoding, &self.msg).len()
    }

    fn fits(&self) -> bool {
        self.max.is_none_or(|m| self.encoded_len() as u64 <= m)
    }

    /// Adds `cmd` regardless of size (Statuses must go; A.2). Returns its CmdID.
    pub(crate) fn push(&mut self, mut cmd: Command) -> CmdId {
        self.next_cmd = super::number(std::slice::from_mut(&mut cmd), self.next_cmd);
        let id = cmd.cmd_id();
        self.msg.body.push(cmd);
        id
    }

    /// Adds `cmd` when the message stays within `MaxMsgSize`; gives it back
    /// otherwise.
    pub(crate) fn try_push(&mut self, cmd: Command) -> Result<CmdId, Box<Command>> {
        let saved = self.next_cmd;
        let id = self.push(cmd);
        if self.fits() {
            Ok(id)
        } else {
            self.next_cmd = saved;
            Err(Box::new(self.msg.body.pop().expect("just pushed")))
        }
    }

    /// Adds the next chunk of `lo`, as big as fits; `None` when not even
    /// [`MIN_CHUNK`] bytes (or the rest) fit.
    pub(crate) fn push_chunk(&mut self, lo: &mut LargeOut) -> Option<CmdId> {
        let rest = lo.data.len() - lo.offset;
        let fits_len = |p: &mut Packer, len: usize| -> bool {
            let id = p.push(lo.chunk(len));
            let ok = p.fits();
            p.msg.body.pop();
            p.next_cmd = id.get();
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
