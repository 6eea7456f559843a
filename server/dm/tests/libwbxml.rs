//! Cross-check against an independent codec, libwbxml (`xml2wbxml`,
//! `wbxml2xml` from Debian's libwbxml2-utils): PROTOCOL A.1 says both
//! encodings MUST be supported; this shows ours agrees with someone else's.
//!
//! For every message of `tests/data/corpus`:
//! 1. our XML decode equals our decode of what `xml2wbxml` made of it (with
//!    and without a string table, so `STR_T` is exercised too);
//! 2. our WBXML encoding, turned back into XML by `wbxml2xml`, decodes to the
//!    same model. Messages carrying an embedded TNDS tree skip this step:
//!    libwbxml renders the nested DM DDF document of an OPAQUE as CDATA
//!    garbage (and does not know code page 2 inside a SyncML document either),
//!    so it cannot express that part; step 1 still covers it.
//!
//! The tools are required: when they are missing the test fails and says so.

use std::path::{Path, PathBuf};
use std::process::Command;

use handover_dm::syncml::{self, Command as Cmd, Data, Item, Message};

const INSTALL_HINT: &str =
    "xml2wbxml/wbxml2xml not found: install libwbxml2-utils (apt-get install libwbxml2-utils)";

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    files.sort();
    files
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("handover-dm-libwbxml-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn run(tool: &str, args: &[&str]) {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{INSTALL_HINT} ({tool}: {e})"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn items_have_tree(items: &[Item]) -> bool {
    items.iter().any(|i| matches!(i.data, Some(Data::Tree(_))))
}

fn has_tree(cmds: &[Cmd]) -> bool {
    cmds.iter().any(|c| match c {
        Cmd::Add(x) | Cmd::Copy(x) | Cmd::Delete(x) | Cmd::Get(x) | Cmd::Replace(x) => {
            items_have_tree(&x.items)
        }
        Cmd::Atomic(x) | Cmd::Sequence(x) => has_tree(&x.commands),
        Cmd::Exec(x) => items_have_tree(std::slice::from_ref(&x.item)),
        Cmd::Alert(x) => items_have_tree(&x.items),
        Cmd::Status(x) => items_have_tree(&x.items),
        Cmd::Results(x) => items_have_tree(&x.items),
    })
}

fn command_names(cmds: &[Cmd], out: &mut Vec<&'static str>) {
    for c in cmds {
        out.push(c.name());
        if let Cmd::Atomic(x) | Cmd::Sequence(x) = c {
            command_names(&x.commands, out);
        }
    }
}

// PROTOCOL A.1: both encodings, checked against libwbxml.
#[test]
fn corpus_agrees_with_libwbxml() {
    let files = corpus();
    assert!(files.len() >= 30, "corpus has {} messages", files.len());
    let mut seen = Vec::new();
    let mut trees = 0;
    for path in &files {
        let name = path.file_stem().unwrap().to_str().unwrap();
        let ours: Message =
            syncml::decode(&std::fs::read(path).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
        command_names(&ours.body, &mut seen);

        for (flags, tag) in [(&["-n"][..], "nostrtbl"), (&[][..], "strtbl")] {
            let wb = scratch(&format!("{name}.{tag}.wbxml"));
            let mut args = vec!["-v", "1.2"];
            args.extend_from_slice(flags);
            args.extend_from_slice(&["-o", wb.to_str().unwrap(), path.to_str().unwrap()]);
            run("xml2wbxml", &args);
            let theirs = syncml::decode(&std::fs::read(&wb).unwrap())
                .unwrap_or_else(|e| panic!("{name} via xml2wbxml {tag}: {e}"));
            assert_eq!(theirs, ours, "{name}: xml2wbxml {tag}");
        }

        if has_tree(&ours.body) {
            trees += 1;
            continue;
        }
        let wb = scratch(&format!("{name}.ours.wbxml"));
        std::fs::write(&wb, syncml::encode_wbxml(&ours)).unwrap();
        let back = scratch(&format!("{name}.back.xml"));
        run(
            "wbxml2xml",
            &["-o", back.to_str().unwrap(), wb.to_str().unwrap()],
        );
        let again = syncml::decode(&std::fs::read(&back).unwrap())
            .unwrap_or_else(|e| panic!("{name} via wbxml2xml: {e}"));
        assert_eq!(again, ours, "{name}: our WBXML through wbxml2xml");
    }
    assert!(trees >= 2, "the corpus embeds TNDS");
    for c in [
        "Add", "Alert", "Atomic", "Copy", "Delete", "Exec", "Get", "Replace", "Sequence", "Status",
        "Results",
    ] {
        assert!(seen.contains(&c), "corpus lacks {c}");
    }
    let _ = std::fs::remove_dir_all(scratch("x").parent().unwrap());
}

// Every MetInf element of code page 1 appears in the corpus.
#[test]
fn corpus_covers_every_meta_element() {
    let all: String = corpus()
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    for el in [
        "Format",
        "Type",
        "Mark",
        "Size",
        "Anchor",
        "Last",
        "Next",
        "Version",
        "NextNonce",
        "MaxMsgSize",
        "MaxObjSize",
        "EMI",
        "Mem",
        "SharedMem",
        "FreeMem",
        "FreeID",
        "FieldLevel",
    ] {
        assert!(all.contains(&format!("<{el}")), "no <{el}> in the corpus");
    }
}
