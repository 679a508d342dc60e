//! The shim state machine, driven with plain values: every transition of seed 000's diagram.

use warden_shim::machine::{
    Action, AuthDecision, EndReason, Input, MachineConfig, Shim, StateName,
};

struct Run {
    shim: Option<Shim>,
    config: MachineConfig,
    now: u64,
}

impl Run {
    fn new(locked: bool) -> Self {
        Self {
            shim: Some(Shim::start(locked, false)),
            config: MachineConfig::default(),
            now: 0,
        }
    }

    fn feed(&mut self, input: Input<'_>) -> Vec<Action> {
        let (next, actions) = self
            .shim
            .take()
            .unwrap()
            .handle(input, self.now, &self.config);
        self.shim = Some(next);
        actions
    }

    fn state(&self) -> StateName {
        self.shim.as_ref().unwrap().name()
    }

    fn login(&mut self) {
        self.feed(Input::Tech(b"\r"));
        let actions = self.feed(Input::Tech(b"tech-001\r123456\r"));
        assert!(actions.iter().any(|a| matches!(a, Action::Authenticate(ans) if ans.technician_id == "tech-001" && ans.code.as_str() == "123456")));
        self.feed(Input::AuthDecided(AuthDecision::Accepted {
            technician_id: "tech-001".into(),
        }));
        assert_eq!(self.state(), StateName::Open);
    }
}

fn forwarded_to_device(actions: &[Action]) -> Vec<u8> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ForwardToDevice(b) => Some(b.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn transitions(actions: &[Action]) -> Vec<(StateName, StateName)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Transition { from, to, .. } => Some((*from, *to)),
            _ => None,
        })
        .collect()
}

/// Verifies: S22, S23
#[test]
fn nothing_typed_before_open_reaches_the_device() {
    let mut run = Run::new(false);
    for input in [&b"ls\r"[..], b"tech\r", b"999999\r"] {
        let actions = run.feed(Input::Tech(input));
        assert!(forwarded_to_device(&actions).is_empty());
    }
    // Waiting for the decision: still nothing.
    assert!(forwarded_to_device(&run.feed(Input::Tech(b"rm -rf /\r"))).is_empty());
    let actions = run.feed(Input::Device(b"device output"));
    assert!(!actions
        .iter()
        .any(|a| matches!(a, Action::ForwardToTech(_))));
}

/// Verifies: S28, S29, S35
#[test]
fn full_session_forwards_both_ways_and_flushes() {
    let mut run = Run::new(false);
    run.login();
    let all: Vec<u8> = (0u8..=255).collect();
    let sent = forwarded_to_device(&run.feed(Input::Tech(&all)));
    // `~` (0x7e) is not at a line start here (it follows 0x7d), so every byte passes unchanged.
    assert_eq!(sent, all);
    let actions = run.feed(Input::Device(&all));
    assert!(matches!(&actions[..], [Action::ForwardToTech(b)] if b == &all));
    let actions = run.feed(Input::TechDisconnected);
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::CloseSession(EndReason::Disconnected))));
    assert_eq!(
        transitions(&actions),
        vec![(StateName::Open, StateName::Flushed)]
    );
    let actions = run.feed(Input::RecordingClosed);
    assert_eq!(
        transitions(&actions),
        vec![(StateName::Flushed, StateName::Idle)]
    );
}

#[test]
fn escape_sequence_at_line_start_ends_the_session() {
    let mut run = Run::new(false);
    run.login();
    let sent = forwarded_to_device(&run.feed(Input::Tech(b"a~.b\r~~x\r~")));
    assert_eq!(sent, b"a~.b\r~x\r");
    let actions = run.feed(Input::Tech(b".ignored"));
    assert!(forwarded_to_device(&actions).is_empty());
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::CloseSession(EndReason::EscapeSequence))));
    assert_eq!(run.state(), StateName::Flushed);
}

#[test]
fn tilde_followed_by_another_byte_is_forwarded() {
    let mut run = Run::new(false);
    run.login();
    assert_eq!(forwarded_to_device(&run.feed(Input::Tech(b"~"))), b"");
    assert_eq!(forwarded_to_device(&run.feed(Input::Tech(b"q"))), b"~q");
}

/// Verifies: S31
#[test]
fn idle_timeout_ends_the_session_normally() {
    let mut run = Run::new(false);
    run.login();
    run.now += run.config.idle_timeout_ms - 1;
    assert!(run.feed(Input::Tick).is_empty());
    run.now += 1;
    let actions = run.feed(Input::Tick);
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::CloseSession(EndReason::IdleTimeout))));
    run.feed(Input::RecordingClosed);
    assert_eq!(run.state(), StateName::Idle);
}

/// Verifies: S1, S25
#[test]
fn rejection_reprompts_after_a_delay_without_saying_why() {
    let mut run = Run::new(false);
    run.feed(Input::Tech(b"\r"));
    run.feed(Input::Tech(b"tech-001\r000000\r"));
    let actions = run.feed(Input::AuthDecided(AuthDecision::Rejected {
        retry_after_ms: 2000,
    }));
    assert_eq!(run.state(), StateName::Challenge);
    let text: Vec<u8> = actions
        .iter()
        .filter_map(|a| match a {
            Action::ToTech(b) => Some(b.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("access denied"));
    assert!(!text.contains("unknown") && !text.contains("replay") && !text.contains("wrong"));
    let actions = run.feed(Input::Tech(b"tech-001\r"));
    assert!(
        matches!(&actions[..], [Action::ToTech(b)] if String::from_utf8_lossy(b).contains("please wait"))
    );
    run.now += 2000;
    let actions = run.feed(Input::Tech(b"tech-001\r"));
    assert!(!String::from_utf8_lossy(match &actions[0] {
        Action::ToTech(b) => b,
        _ => panic!(),
    })
    .contains("please wait"));
}

/// Verifies: S26, S27
#[test]
fn lockout_persists_and_only_reset_lifts_it() {
    let mut run = Run::new(false);
    run.feed(Input::Tech(b"\r"));
    run.feed(Input::Tech(b"tech-001\r000000\r"));
    let actions = run.feed(Input::AuthDecided(AuthDecision::LockedOut));
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::PersistPortLock { locked: true })));
    assert_eq!(run.state(), StateName::Locked);
    // Correct credentials change nothing while locked.
    assert!(!run
        .feed(Input::Tech(b"tech-001\r123456\r"))
        .iter()
        .any(|a| matches!(a, Action::Authenticate(_))));
    run.feed(Input::Tick);
    assert_eq!(run.state(), StateName::Locked);
    let actions = run.feed(Input::Reset {
        admin: "admin".into(),
    });
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::PersistPortLock { locked: false })));
    assert_eq!(run.state(), StateName::Idle);
    // A restart with the persisted lock starts LOCKED.
    assert_eq!(Shim::start(true, false).name(), StateName::Locked);
    // An emergency stop survives a restart too, and wins over the lock.
    assert_eq!(Shim::start(true, true).name(), StateName::EmergencyStop);
}

/// Verifies: S20, S30, S33
#[test]
fn tamper_in_open_stops_forwarding_and_needs_a_reset() {
    let mut run = Run::new(false);
    run.login();
    let actions = run.feed(Input::Tamper("case opened".into()));
    assert!(
        matches!(actions[0], Action::Alert { .. }),
        "alert first: {actions:?}"
    );
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::CloseSession(EndReason::Tamper(_)))));
    assert!(forwarded_to_device(&run.feed(Input::Tech(b"more"))).is_empty());
    run.feed(Input::RecordingClosed);
    assert_eq!(run.state(), StateName::EmergencyStop);
    assert!(forwarded_to_device(&run.feed(Input::Tech(b"more"))).is_empty());
    run.feed(Input::Tick);
    run.feed(Input::TechDisconnected);
    assert_eq!(run.state(), StateName::EmergencyStop);
    run.feed(Input::Reset {
        admin: "admin".into(),
    });
    assert_eq!(run.state(), StateName::Idle);
}

/// Verifies: S32
#[test]
fn storage_exhausted_in_open_is_an_emergency_stop() {
    let mut run = Run::new(false);
    run.login();
    run.feed(Input::StorageExhausted("disk full".into()));
    run.feed(Input::RecordingClosed);
    assert_eq!(run.state(), StateName::EmergencyStop);
}

/// Verifies: S30, S35
#[test]
fn tamper_in_idle_goes_straight_to_emergency_stop() {
    let mut run = Run::new(false);
    let actions = run.feed(Input::Tamper("gpio".into()));
    assert_eq!(
        transitions(&actions),
        vec![(StateName::Idle, StateName::EmergencyStop)]
    );
}

#[test]
fn challenge_times_out_and_can_be_cancelled() {
    let mut run = Run::new(false);
    run.feed(Input::Tech(b"\r"));
    run.now += run.config.challenge_timeout_ms;
    run.feed(Input::Tick);
    assert_eq!(run.state(), StateName::Idle);
    run.feed(Input::Tech(b"\r"));
    run.feed(Input::Tech(b"te\x03"));
    assert_eq!(run.state(), StateName::Idle);
}

/// Verifies: S32
#[test]
fn storage_exhausted_anywhere_stops_forwarding() {
    let mut run = Run::new(false);
    let actions = run.feed(Input::StorageExhausted("audit spool full".into()));
    assert!(matches!(actions[0], Action::Alert { .. }));
    assert_eq!(run.state(), StateName::EmergencyStop);
}

/// Found by outside testing: once stopped because nothing could be recorded, every failed
/// record of the stop was another storage-exhausted input and another stop, every few
/// milliseconds. A stopped shim stays stopped without acting again.
#[test]
fn storage_exhausted_when_already_stopped_does_nothing_more() {
    for open in [false, true] {
        let mut run = Run::new(false);
        if open {
            run.login();
        }
        run.feed(Input::StorageExhausted("audit spool full".into()));
        let again = run.feed(Input::StorageExhausted("audit spool full".into()));
        assert!(again.is_empty(), "{again:?}");
        if open {
            run.feed(Input::RecordingClosed);
        }
        assert_eq!(run.state(), StateName::EmergencyStop);
        assert!(run
            .feed(Input::StorageExhausted("audit spool full".into()))
            .is_empty());
    }
}

#[test]
fn shutdown_closes_an_open_session_cleanly() {
    let mut run = Run::new(false);
    run.login();
    let actions = run.feed(Input::Shutdown);
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::CloseSession(EndReason::Shutdown))));
    run.feed(Input::RecordingClosed);
    assert_eq!(run.state(), StateName::Idle);
}

/// The escape rules byte by byte, as the seed states them: `~.` at the start of a line ends
/// the session, `~~` there sends one `~`, any other byte after such a `~` sends both.
fn escape_model(input: &[u8]) -> (Vec<u8>, bool) {
    let (mut out, mut line_start, mut tilde) = (Vec::new(), true, false);
    for &byte in input {
        if tilde {
            tilde = false;
            match byte {
                b'.' => return (out, true),
                b'~' => {
                    out.push(b'~');
                    line_start = false;
                    continue;
                }
                _ => out.push(b'~'),
            }
        } else if byte == b'~' && line_start {
            tilde = true;
            continue;
        }
        out.push(byte);
        line_start = byte == b'\r' || byte == b'\n';
    }
    (out, false)
}

proptest::proptest! {
    /// However the technician's bytes are split into reads, what reaches the device and whether
    /// the session ends match the byte-by-byte rules (the scan has a fast path for chunks that
    /// hold no escape).
    #[test]
    fn escape_scan_matches_the_byte_by_byte_rules_for_any_chunking(
        input in proptest::collection::vec(proptest::sample::select(b"ab~.\r\n".to_vec()), 0..64),
        cuts in proptest::collection::vec(0usize..64, 0..6),
    ) {
        let (expected, ends) = escape_model(&input);
        let mut run = Run::new(false);
        run.login();
        let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c < input.len()).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let (mut sent, mut ended, mut from) = (Vec::new(), false, 0);
        for to in cuts.into_iter().chain([input.len()]) {
            let actions = run.feed(Input::Tech(&input[from..to]));
            sent.extend(forwarded_to_device(&actions));
            ended |= actions
                .iter()
                .any(|a| matches!(a, Action::CloseSession(EndReason::EscapeSequence)));
            from = to;
            if ended {
                break;
            }
        }
        proptest::prop_assert_eq!(sent, expected);
        proptest::prop_assert_eq!(ended, ends);
    }
}
