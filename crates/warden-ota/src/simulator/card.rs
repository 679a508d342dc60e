//! A small GlobalPlatform card: what the simulated UICC answers to the commands in a script.
//!
//! It keeps a registry (the Issuer Security Domain, executable load files with their modules,
//! applications), the selected application, and a secure-channel flag set by INITIALIZE UPDATE
//! and EXTERNAL AUTHENTICATE. It answers SELECT, GET STATUS (TLV format), GET DATA, INSTALL [for
//! install], DELETE, INITIALIZE UPDATE and EXTERNAL AUTHENTICATE; anything else gets `6D00`.
//! The secure channel is simulated (no SCP02/SCP03 cryptography): enough to exercise the
//! command flow, not to test keys. No I/O: tests drive it with plain values.

use crate::apdu::{CommandApdu, ResponseApdu};
use crate::gp::{self, Aid, LifeCycle, Privileges};
use crate::script::{CommandItem, CommandScript, ResponseScript};
use crate::tlv::{self, Reader, Tag};

const INS_INITIALIZE_UPDATE: u8 = 0x50;
const INS_EXTERNAL_AUTHENTICATE: u8 = 0x82;

const SW_OK: u16 = 0x9000;
const SW_WRONG_DATA: u16 = 0x6A80;
const SW_NOT_FOUND: u16 = 0x6A82;
const SW_REF_NOT_FOUND: u16 = 0x6A88;
const SW_CONDITIONS: u16 = 0x6985;
const SW_WRONG_LENGTH: u16 = 0x6700;
const SW_WRONG_P1P2: u16 = 0x6A86;
const SW_INS_UNKNOWN: u16 = 0x6D00;
const SW_CLA_UNKNOWN: u16 = 0x6E00;
const SW_SECURITY: u16 = 0x6982;

/// One registry entry of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardApp {
    pub aid: Aid,
    pub life_cycle: u8,
    pub privileges: Privileges,
    pub load_file: Option<Aid>,
}

/// An executable load file and its modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadFile {
    pub aid: Aid,
    pub modules: Vec<Aid>,
}

// Implements: O25
/// The card's state.
#[derive(Debug, Clone)]
pub struct GpCard {
    pub isd: Aid,
    pub card_life_cycle: u8,
    pub apps: Vec<CardApp>,
    pub load_files: Vec<LoadFile>,
    pub selected: Option<Aid>,
    /// INITIALIZE UPDATE seen, waiting for EXTERNAL AUTHENTICATE.
    host_challenge: Option<[u8; 8]>,
    pub authenticated: bool,
    sequence: u16,
    /// Commands processed (all scripts).
    pub commands: u64,
    /// What the card remembers of the scripts it was sent, across sessions (filled in by
    /// [`super::run_session`]).
    pub journal: Vec<Ran>,
}

/// A script as the card remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    pub commands: Vec<CommandApdu>,
    /// The card ran it (rather than refusing it, e.g. for an unknown target).
    pub executed: bool,
    /// The server answered the request that carried its results (the card may forget them).
    pub acknowledged: bool,
}

fn aid(hex: &str) -> Aid {
    Aid::from_hex(hex).expect("valid built-in AID")
}

impl Default for GpCard {
    fn default() -> Self {
        Self::new()
    }
}

impl GpCard {
    /// ISD A000000151000000 (SECURED), one load file with one module, one application.
    pub fn new() -> Self {
        let lf = aid("A0000005591010");
        let module = aid("A000000559101001");
        Self {
            isd: aid("A000000151000000"),
            card_life_cycle: 0x0F,
            apps: vec![CardApp {
                aid: aid("A00000055910100101"),
                life_cycle: 0x07,
                privileges: Privileges::NONE,
                load_file: Some(lf.clone()),
            }],
            load_files: vec![LoadFile {
                aid: lf,
                modules: vec![module],
            }],
            selected: None,
            host_challenge: None,
            authenticated: false,
            sequence: 1,
            commands: 0,
            journal: Vec::new(),
        }
    }

    /// Runs a command script as the card's RAM application would: commands in order, stopping
    /// after the first that fails (SW other than 90xx, 61xx, 62xx, 63xx).
    pub fn run_script(&mut self, script: &CommandScript) -> ResponseScript {
        let mut responses = Vec::new();
        for item in &script.items {
            if let CommandItem::Apdu(cmd) = item {
                let r = self.process(cmd);
                let stop = !(r.is_success() || r.is_warning());
                responses.push(r);
                if stop {
                    break;
                }
            }
        }
        ResponseScript::with_responses(responses.len() as u32, responses)
    }

    /// Answers one command.
    pub fn process(&mut self, cmd: &CommandApdu) -> ResponseApdu {
        self.commands += 1;
        let cla = cmd.cla();
        if cla != 0x00 && cla & 0x80 == 0 && cla & 0xF0 != 0x00 {
            return ResponseApdu::new(Vec::new(), SW_CLA_UNKNOWN);
        }
        match cmd.ins() {
            gp::INS_SELECT => self.select(cmd),
            gp::INS_GET_STATUS => self.get_status(cmd),
            gp::INS_GET_DATA => self.get_data(cmd),
            gp::INS_INSTALL => self.install(cmd),
            gp::INS_DELETE => self.delete(cmd),
            INS_INITIALIZE_UPDATE => self.initialize_update(cmd),
            INS_EXTERNAL_AUTHENTICATE => self.external_authenticate(cmd),
            _ => sw(SW_INS_UNKNOWN),
        }
    }

    fn find_app(&self, aid: &[u8]) -> Option<&CardApp> {
        self.apps.iter().find(|a| a.aid.as_bytes() == aid)
    }

    fn select(&mut self, cmd: &CommandApdu) -> ResponseApdu {
        if cmd.p1() != 0x04 {
            return sw(SW_WRONG_P1P2);
        }
        let target = cmd.data();
        let found = if target.is_empty() || target == self.isd.as_bytes() {
            Some((self.isd.clone(), true))
        } else {
            self.apps
                .iter()
                .find(|a| a.aid.as_bytes().starts_with(target))
                .map(|a| (a.aid.clone(), false))
        };
        match found {
            Some((aid, is_isd)) => {
                self.selected = Some(aid.clone());
                // FCI: 6F { 84 AID, A5 { 9F6E …, 9F65 max length } } for the ISD; 6F { 84 AID }.
                let mut inner = Vec::new();
                tlv::write_tlv(&mut inner, Tag::known(0x84), aid.as_bytes());
                if is_isd {
                    let mut prop = Vec::new();
                    tlv::write_tlv(&mut prop, Tag::known(0x9F65), &[0xFF]);
                    tlv::write_tlv(&mut inner, Tag::known(0xA5), &prop);
                }
                let mut fci = Vec::new();
                tlv::write_tlv(&mut fci, Tag::known(0x6F), &inner);
                ResponseApdu::new(fci, SW_OK)
            }
            None => sw(SW_NOT_FOUND),
        }
    }

    fn get_status(&mut self, cmd: &CommandApdu) -> ResponseApdu {
        if cmd.cla() & 0x80 == 0 {
            return sw(SW_CLA_UNKNOWN);
        }
        if cmd.p2() & 0x02 == 0 {
            // Only the TLV response format is modelled.
            return sw(SW_WRONG_P1P2);
        }
        // Search criterion: 4F <prefix>.
        let mut prefix: &[u8] = &[];
        let mut r = Reader::new(cmd.data());
        while !r.is_empty() {
            match r.read_definite() {
                Ok(t) if t.tag == gp::TAG_AID => prefix = t.value,
                Ok(_) => {}
                Err(_) => return sw(SW_WRONG_DATA),
            }
        }
        let mut out = Vec::new();
        let matches = |a: &Aid| a.as_bytes().starts_with(prefix);
        match cmd.p1() {
            0x80 => {
                if matches(&self.isd) {
                    out.push(entry(
                        &self.isd,
                        self.card_life_cycle,
                        Some(
                            Privileges::SECURITY_DOMAIN
                                | Privileges::CARD_LOCK
                                | Privileges::CARD_TERMINATE
                                | Privileges::CVM_MANAGEMENT,
                        ),
                        None,
                        &[],
                    ));
                }
            }
            0x40 => {
                for a in self.apps.iter().filter(|a| matches(&a.aid)) {
                    out.push(entry(
                        &a.aid,
                        a.life_cycle,
                        Some(a.privileges),
                        a.load_file.as_ref(),
                        &[],
                    ));
                }
            }
            0x20 | 0x10 => {
                let with_modules = cmd.p1() == 0x10;
                for lf in self.load_files.iter().filter(|l| matches(&l.aid)) {
                    let modules: &[Aid] = if with_modules { &lf.modules } else { &[] };
                    out.push(entry(&lf.aid, 0x01, None, None, modules));
                }
            }
            _ => return sw(SW_WRONG_P1P2),
        }
        if out.is_empty() {
            return sw(SW_REF_NOT_FOUND);
        }
        ResponseApdu::new(out.concat(), SW_OK)
    }

    fn get_data(&mut self, cmd: &CommandApdu) -> ResponseApdu {
        let tag = u16::from_be_bytes([cmd.p1(), cmd.p2()]);
        let value: Vec<u8> = match tag {
            gp::data_object::IIN => vec![0x42, 0x03, 0x89, 0x88, 0x21],
            gp::data_object::CIN => {
                let mut v = vec![0x45, 0x08];
                v.extend_from_slice(&[0x89, 0x88, 0x21, 0x10, 0x00, 0x00, 0x00, 0x01]);
                v
            }
            gp::data_object::CARD_DATA => {
                // 66 { 73 { 06 <GP OID> 60 { 06 <card mgmt type v2.3> } } }
                let mut inner = Vec::new();
                tlv::write_tlv(
                    &mut inner,
                    Tag::known(0x06),
                    &[0x2A, 0x86, 0x48, 0x86, 0xFC, 0x6B, 0x01],
                );
                let mut version = Vec::new();
                tlv::write_tlv(
                    &mut version,
                    Tag::known(0x06),
                    &[0x2A, 0x86, 0x48, 0x86, 0xFC, 0x6B, 0x02, 0x02, 0x03],
                );
                tlv::write_tlv(&mut inner, Tag::known(0x60), &version);
                let mut rec = Vec::new();
                tlv::write_tlv(&mut rec, Tag::known(0x73), &inner);
                let mut out = Vec::new();
                tlv::write_tlv(&mut out, Tag::known(0x66), &rec);
                out
            }
            gp::data_object::CPLC => {
                let mut v = vec![0x9F, 0x7F, 0x2A];
                v.extend((0..42u8).map(|i| i.wrapping_mul(7)));
                v
            }
            gp::data_object::KEY_INFORMATION => {
                // E0 { C0 { key id 01, version 30, AES 88, length 10 } x3 }
                let mut inner = Vec::new();
                for id in 1..=3u8 {
                    tlv::write_tlv(&mut inner, Tag::known(0xC0), &[id, 0x30, 0x88, 0x10]);
                }
                let mut out = Vec::new();
                tlv::write_tlv(&mut out, Tag::known(0xE0), &inner);
                out
            }
            _ => return sw(SW_REF_NOT_FOUND),
        };
        ResponseApdu::new(value, SW_OK)
    }

    fn install(&mut self, cmd: &CommandApdu) -> ResponseApdu {
        if cmd.p1() & 0x04 == 0 {
            // Only [for install] (with or without make selectable) is modelled.
            return sw(SW_WRONG_P1P2);
        }
        let Some(fields) = length_prefixed(cmd.data(), 6) else {
            return sw(SW_WRONG_DATA);
        };
        let (Ok(lf), Ok(module), Ok(app)) = (
            Aid::new(fields[0].to_vec()),
            Aid::new(fields[1].to_vec()),
            Aid::new(fields[2].to_vec()),
        ) else {
            return sw(SW_WRONG_DATA);
        };
        let Some(privileges) = Privileges::from_bytes(fields[3]) else {
            return sw(SW_WRONG_DATA);
        };
        let known_module = self
            .load_files
            .iter()
            .any(|l| l.aid == lf && l.modules.contains(&module));
        if !known_module {
            return sw(SW_REF_NOT_FOUND);
        }
        if self.find_app(app.as_bytes()).is_some() || app == self.isd {
            return sw(SW_CONDITIONS);
        }
        let selectable = cmd.p1() & 0x08 != 0;
        self.apps.push(CardApp {
            aid: app,
            life_cycle: if selectable { 0x07 } else { 0x03 },
            privileges,
            load_file: Some(lf),
        });
        ResponseApdu::new(vec![0x00], SW_OK)
    }

    fn delete(&mut self, cmd: &CommandApdu) -> ResponseApdu {
        let mut r = Reader::new(cmd.data());
        let target = match r.read_definite() {
            Ok(t) if t.tag == gp::TAG_AID => t.value.to_vec(),
            _ => return sw(SW_WRONG_DATA),
        };
        if target == self.isd.as_bytes() {
            return sw(SW_CONDITIONS);
        }
        let related = cmd.p2() & 0x80 != 0;
        if let Some(pos) = self.apps.iter().position(|a| a.aid.as_bytes() == target) {
            self.apps.remove(pos);
            return ResponseApdu::new(vec![0x00], SW_OK);
        }
        if let Some(pos) = self
            .load_files
            .iter()
            .position(|l| l.aid.as_bytes() == target)
        {
            let dependants = self
                .apps
                .iter()
                .any(|a| a.load_file.as_ref().is_some_and(|l| l.as_bytes() == target));
            if dependants && !related {
                return sw(SW_CONDITIONS);
            }
            self.apps
                .retain(|a| a.load_file.as_ref().is_none_or(|l| l.as_bytes() != target));
            self.load_files.remove(pos);
            return ResponseApdu::new(vec![0x00], SW_OK);
        }
        sw(SW_REF_NOT_FOUND)
    }

    fn initialize_update(&mut self, cmd: &CommandApdu) -> ResponseApdu {
        if cmd.cla() & 0x80 == 0 {
            return sw(SW_CLA_UNKNOWN);
        }
        let Ok(challenge) = <[u8; 8]>::try_from(cmd.data()) else {
            return sw(SW_WRONG_LENGTH);
        };
        self.host_challenge = Some(challenge);
        self.authenticated = false;
        self.sequence = self.sequence.wrapping_add(1);
        // Key diversification data (10), key version 30 + SCP 02, sequence counter (2), card
        // challenge (6), card cryptogram (8). The cryptogram is a stand-in, not SCP02.
        let mut out = vec![0u8; 10];
        out[..4].copy_from_slice(&[0x00, 0x00, 0x89, 0x88]);
        out.extend_from_slice(&[0x30, 0x02]);
        out.extend_from_slice(&self.sequence.to_be_bytes());
        let mac =
            warden_core::mac::sha256(&[&challenge[..], &self.sequence.to_be_bytes()].concat());
        out.extend_from_slice(&mac[..6]);
        out.extend_from_slice(&mac[6..14]);
        ResponseApdu::new(out, SW_OK)
    }

    fn external_authenticate(&mut self, cmd: &CommandApdu) -> ResponseApdu {
        if self.host_challenge.take().is_none() {
            return sw(SW_CONDITIONS);
        }
        if cmd.data().len() != 16 {
            return sw(SW_WRONG_LENGTH);
        }
        if cmd.data()[..8] == [0u8; 8] {
            // A host cryptogram of zeros stands for a wrong one.
            return sw(SW_SECURITY);
        }
        self.authenticated = true;
        sw(SW_OK)
    }
}

fn sw(sw: u16) -> ResponseApdu {
    ResponseApdu::new(Vec::new(), sw)
}

fn entry(
    aid: &Aid,
    life_cycle: u8,
    privileges: Option<Privileges>,
    load_file: Option<&Aid>,
    modules: &[Aid],
) -> Vec<u8> {
    let mut inner = Vec::new();
    tlv::write_tlv(&mut inner, gp::TAG_AID, aid.as_bytes());
    tlv::write_tlv(&mut inner, gp::TAG_LIFE_CYCLE, &[LifeCycle(life_cycle).0]);
    if let Some(p) = privileges {
        tlv::write_tlv(&mut inner, gp::TAG_PRIVILEGES, &p.to_bytes());
    }
    if let Some(lf) = load_file {
        tlv::write_tlv(&mut inner, gp::TAG_LOAD_FILE_AID, lf.as_bytes());
    }
    for m in modules {
        tlv::write_tlv(&mut inner, gp::TAG_MODULE_AID, m.as_bytes());
    }
    let mut out = Vec::new();
    tlv::write_tlv(&mut out, gp::TAG_REGISTRY_ENTRY, &inner);
    out
}

/// Splits `n` one-byte-length-prefixed fields; `None` if they do not fit exactly.
fn length_prefixed(data: &[u8], n: usize) -> Option<Vec<&[u8]>> {
    let mut out = Vec::with_capacity(n);
    let mut rest = data;
    for _ in 0..n {
        let (&len, tail) = rest.split_first()?;
        let len = usize::from(len);
        if tail.len() < len {
            return None;
        }
        out.push(&tail[..len]);
        rest = &tail[len..];
    }
    rest.is_empty().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gp::{InstallForInstall, Occurrence, StatusSubset};

    /// Verifies: O25
    #[test]
    fn gp_commands() {
        let mut card = GpCard::new();
        let isd = card.isd.clone();
        assert_eq!(card.process(&gp::select_by_aid(&isd)).sw(), 0x9000);
        let r = card.process(
            &gp::get_status(StatusSubset::Applications, Occurrence::FirstOrAll, &[]).unwrap(),
        );
        let page = gp::decode_get_status_response(&r).unwrap();
        assert_eq!(page.entries.len(), 1);
        let r = card.process(
            &gp::get_status(
                StatusSubset::IssuerSecurityDomain,
                Occurrence::FirstOrAll,
                &[],
            )
            .unwrap(),
        );
        let page = gp::decode_get_status_response(&r).unwrap();
        assert!(page.entries[0].is_security_domain());
        let r = card.process(
            &gp::get_status(
                StatusSubset::LoadFilesAndModules,
                Occurrence::FirstOrAll,
                &[],
            )
            .unwrap(),
        );
        assert_eq!(
            gp::decode_get_status_response(&r).unwrap().entries[0]
                .modules
                .len(),
            1
        );
        assert_eq!(
            card.process(&gp::get_data(gp::data_object::CPLC)).sw(),
            0x9000
        );
        assert_eq!(card.process(&gp::get_data(0x1234)).sw(), 0x6A88);

        let app = Aid::from_hex("A00000055910100102").unwrap();
        let install = InstallForInstall::new(
            Aid::from_hex("A0000005591010").unwrap(),
            Aid::from_hex("A000000559101001").unwrap(),
            app.clone(),
        )
        .to_apdu()
        .unwrap();
        assert_eq!(card.process(&install).sw(), 0x9000);
        assert_eq!(card.process(&install).sw(), 0x6985, "already installed");
        assert_eq!(card.process(&gp::select_by_aid(&app)).sw(), 0x9000);
        assert_eq!(card.process(&gp::delete(&app, false)).sw(), 0x9000);
        assert_eq!(card.process(&gp::delete(&app, false)).sw(), 0x6A88);
        assert_eq!(card.process(&gp::select_by_aid(&app)).sw(), 0x6A82);
        assert_eq!(card.process(&gp::delete(&isd, false)).sw(), 0x6985);

        let iu = CommandApdu::new(0x80, 0x50, 0, 0)
            .with_data(vec![1; 8])
            .unwrap()
            .with_ne(256)
            .unwrap();
        let r = card.process(&iu);
        assert_eq!((r.sw(), r.data().len()), (0x9000, 28));
        let ea = CommandApdu::new(0x84, 0x82, 0, 0)
            .with_data(vec![2; 16])
            .unwrap();
        assert_eq!(card.process(&ea).sw(), 0x9000);
        assert!(card.authenticated);
        assert_eq!(
            card.process(&ea).sw(),
            0x6985,
            "needs a fresh INITIALIZE UPDATE"
        );
        assert_eq!(
            card.process(&CommandApdu::new(0x80, 0x99, 0, 0)).sw(),
            0x6D00
        );
    }

    #[test]
    fn scripts_stop_at_the_first_error() {
        let mut card = GpCard::new();
        let script = CommandScript::new([
            gp::get_data(gp::data_object::IIN),
            CommandApdu::new(0x80, 0x99, 0, 0),
            gp::get_data(gp::data_object::CIN),
        ]);
        let r = card.run_script(&script);
        assert_eq!(r.executed_count(), Some(2));
        let sws: Vec<u16> = r.responses().map(|r| r.sw()).collect();
        assert_eq!(sws, vec![0x9000, 0x6D00]);
    }
}
