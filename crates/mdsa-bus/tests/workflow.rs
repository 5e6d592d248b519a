//! The request workflow: every state pair against the transition table, the recorded path,
//! and the events published on the bus.

mod common;

use std::thread;
use std::time::Duration;

use common::{DEADLINE, watchdog};
use mdsa_bus::{
    Bus, OverflowPolicy, RequestState, SubscribeOptions, Workflow, WorkflowError, WorkflowEvent,
};
use proptest::prelude::*;

use RequestState::{Abstained, Classifying, Completed, Executing, Init, Loading, Validating};

fn failed(reason: &str) -> RequestState {
    RequestState::Failed {
        reason: reason.to_owned(),
    }
}

/// The table from the issue, written out independently of the implementation, by name.
const LEGAL: &[(&str, &str)] = &[
    ("init", "classifying"),
    ("classifying", "loading"),
    ("classifying", "executing"),
    ("classifying", "abstained"),
    ("loading", "executing"),
    ("executing", "validating"),
    ("validating", "completed"),
    ("validating", "executing"),
    ("executing", "loading"),
    ("init", "failed"),
    ("classifying", "failed"),
    ("loading", "failed"),
    ("executing", "failed"),
    ("validating", "failed"),
];

fn expected_legal(from: &RequestState, to: &RequestState) -> bool {
    LEGAL.contains(&(from.name(), to.name()))
}

/// Every state a test may start from, including a failure with a non-empty reason.
fn all_states() -> Vec<RequestState> {
    let mut states = RequestState::kinds().to_vec();
    states.push(failed("out of memory"));
    states
}

/// A workflow driven into `target` along legal edges.
fn workflow_in(target: &RequestState) -> Workflow {
    let steps: Vec<RequestState> = match target {
        Init => vec![],
        Classifying => vec![Classifying],
        Loading => vec![Classifying, Loading],
        Executing => vec![Classifying, Executing],
        Validating => vec![Classifying, Executing, Validating],
        Completed => vec![Classifying, Executing, Validating, Completed],
        Abstained => vec![Classifying, Abstained],
        RequestState::Failed { .. } => vec![target.clone()],
    };
    let mut wf = Workflow::new("req");
    for s in steps {
        wf.advance(s).expect("setup path is legal");
    }
    assert_eq!(wf.state(), target);
    wf
}

#[test]
fn every_state_pair_matches_the_table() {
    let states = all_states();
    let mut legal = 0;
    for from in &states {
        for to in &states {
            let expected = expected_legal(from, to);
            assert_eq!(
                from.can_transition_to(to),
                expected,
                "table says {from} -> {to} is {}",
                if expected { "legal" } else { "illegal" }
            );

            let mut wf = workflow_in(from);
            let before = wf.transitions().len();
            match wf.advance(to.clone()) {
                Ok(()) => {
                    assert!(expected, "{from} -> {to} was accepted");
                    legal += 1;
                    assert_eq!(wf.state(), to);
                    let t = wf.transitions().last().expect("recorded");
                    assert_eq!((&t.from, &t.to), (from, to));
                    assert_eq!(wf.is_finished(), to.is_terminal());
                }
                Err(WorkflowError::IllegalTransition {
                    request_id,
                    from: err_from,
                    to: err_to,
                }) => {
                    assert!(!expected, "{from} -> {to} was refused");
                    assert_eq!(request_id, "req");
                    assert_eq!((&err_from, &err_to), (from, to));
                    assert_eq!(wf.state(), from, "a refused transition changes nothing");
                    assert_eq!(wf.transitions().len(), before);
                }
                Err(other) => panic!("unexpected error {other}"),
            }
        }
    }
    // 14 legal kind pairs; the 5 into Failed are counted twice (two Failed targets).
    assert_eq!(legal, 14 + 5);
}

#[test]
fn terminal_states_and_self_transitions() {
    for state in all_states() {
        assert!(!state.can_transition_to(&state), "{state} -> itself");
        assert_eq!(state.successors().is_empty(), state.is_terminal());
    }
    let terminal: Vec<_> = RequestState::kinds()
        .into_iter()
        .filter(RequestState::is_terminal)
        .map(|s| s.name())
        .collect();
    assert_eq!(terminal, ["completed", "failed", "abstained"]);
}

#[test]
fn illegal_transition_error_names_request_and_states() {
    let mut wf = Workflow::new("req-42");
    let err = wf.advance(Completed).expect_err("Init -> Completed");
    assert_eq!(
        err.to_string(),
        "request req-42: illegal transition init -> completed"
    );
    wf.fail("model crashed").expect("Init -> Failed");
    let err = wf.fail("again").expect_err("already failed");
    assert!(
        err.to_string()
            .contains("failed (model crashed) -> failed (again)")
    );
}

#[test]
fn retries_are_counted_in_attempts() {
    let mut wf = Workflow::new("retry");
    for s in [
        Classifying,
        Loading,
        Executing,
        Loading, // evicted: reload
        Executing,
        Validating,
        Executing, // validation failed: generate again
        Validating,
        Completed,
    ] {
        wf.advance(s).expect("legal");
    }
    assert_eq!(wf.attempts(&Init), 1);
    assert_eq!(wf.attempts(&Loading), 2);
    assert_eq!(wf.attempts(&Executing), 3);
    assert_eq!(wf.attempts(&Validating), 2);
    assert_eq!(wf.attempts(&Completed), 1);
    assert_eq!(wf.attempts(&failed("")), 0);
    assert_eq!(wf.transitions().len(), 9);
}

#[test]
fn path_has_every_stay_and_durations_fit_in_the_total() {
    let mut wf = Workflow::new("timed");
    for s in [Classifying, Loading, Executing, Validating] {
        thread::sleep(Duration::from_millis(2));
        wf.advance(s).expect("legal");
    }
    let open = wf.path();
    assert_eq!(open.len(), 5);
    assert_eq!(
        open.last().map(|s| s.duration),
        Some(None),
        "current state is open"
    );
    assert!(wf.total_duration() >= Duration::from_millis(8));

    thread::sleep(Duration::from_millis(2));
    wf.advance(Completed).expect("legal");
    let path = wf.path();
    let states: Vec<_> = path.iter().map(|s| s.state.name()).collect();
    assert_eq!(
        states,
        [
            "init",
            "classifying",
            "loading",
            "executing",
            "validating",
            "completed"
        ]
    );
    let durations: Vec<Duration> = path
        .iter()
        .map(|s| s.duration.expect("finished: every span is closed"))
        .collect();
    assert_eq!(durations.last(), Some(&Duration::ZERO));
    assert!(
        durations[..5]
            .iter()
            .all(|d| *d >= Duration::from_millis(2))
    );
    let sum: Duration = durations.iter().sum();
    let total = wf.total_duration();
    assert!(sum <= total, "{sum:?} > {total:?}");
    assert_eq!(
        total,
        wf.total_duration(),
        "the total is frozen once finished"
    );
    // Stamps agree with the transitions and with the durations.
    for (span, t) in path[1..].iter().zip(wf.transitions()) {
        assert_eq!(span.entered_at, t.at);
        assert_eq!(span.state, t.to);
    }
    for (w, t) in path.windows(2).zip(wf.transitions()) {
        assert_eq!(w[0].duration, Some(t.elapsed_in_from));
        assert!(w[1].entered_at >= w[0].entered_at);
    }
}

#[test]
fn transitions_are_published_in_order_with_non_decreasing_stamps() {
    let bus = Bus::new();
    let events = bus.subscribe::<WorkflowEvent>(SubscribeOptions::default());
    let mut wf = Workflow::with_bus("evt", &bus);
    for s in [Classifying, Executing, Loading, Executing, Validating] {
        wf.advance(s).expect("legal");
    }
    wf.fail("validator gave up").expect("legal");
    let got: Vec<WorkflowEvent> = events.try_iter().collect();
    assert_eq!(got.len(), 6);
    for (i, (e, t)) in got.iter().zip(wf.transitions()).enumerate() {
        assert_eq!(e.sequence, i);
        assert_eq!(&e.transition, t);
        assert_eq!(e.transition.request_id, "evt");
    }
    for w in got.windows(2) {
        assert!(w[1].transition.at >= w[0].transition.at);
        assert_eq!(w[1].transition.from, w[0].transition.to, "a chain");
    }
    assert_eq!(wf.unpublished_events(), 0);
}

#[test]
fn filtered_subscriber_follows_one_request_among_many() {
    watchdog(DEADLINE, || {
        let bus = Bus::new();
        let mine = bus.subscribe_filtered::<WorkflowEvent, _>(SubscribeOptions::default(), |e| {
            e.transition.request_id == "req-2"
        });
        let workers: Vec<_> = (0..4)
            .map(|i| {
                let bus = bus.clone();
                thread::spawn(move || {
                    let mut wf = Workflow::with_bus(format!("req-{i}"), &bus);
                    for s in [Classifying, Loading, Executing, Validating, Completed] {
                        wf.advance(s).expect("legal");
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("worker");
        }
        let got: Vec<_> = mine.try_iter().collect();
        let to: Vec<_> = got.iter().map(|e| e.transition.to.name()).collect();
        assert_eq!(
            to,
            [
                "classifying",
                "loading",
                "executing",
                "validating",
                "completed"
            ]
        );
        assert!(got.iter().all(|e| e.transition.request_id == "req-2"));
    });
}

#[test]
fn a_full_observer_does_not_block_or_veto_the_workflow() {
    let bus = Bus::new();
    let strict = bus.subscribe::<WorkflowEvent>(SubscribeOptions::new(1, OverflowPolicy::Error));
    let mut wf = Workflow::with_bus("busy", &bus);
    wf.advance(Classifying).expect("legal");
    wf.advance(Abstained)
        .expect("legal despite the full observer");
    assert_eq!(wf.state(), &Abstained);
    assert_eq!(wf.unpublished_events(), 1);
    assert_eq!(strict.try_iter().count(), 1);
}

#[test]
fn workflow_without_bus_and_debug() {
    let wf = Workflow::new(String::from("plain"));
    assert_eq!(wf.request_id(), "plain");
    assert_eq!(wf.path().len(), 1);
    assert!(!wf.is_finished());
    assert!(format!("{wf:?}").contains("plain"));
}

proptest! {
    /// Random walks over all kinds: the workflow follows the table exactly, never leaves a
    /// terminal state, and its history stays consistent.
    #[test]
    fn random_walks_follow_the_table(targets in prop::collection::vec(0usize..8, 0..40)) {
        let kinds = RequestState::kinds();
        let mut wf = Workflow::new("walk");
        let mut model = Init;
        let mut accepted = 0;
        for i in targets {
            let to = kinds[i].clone();
            let legal = model.can_transition_to(&to);
            prop_assert_eq!(wf.advance(to.clone()).is_ok(), legal);
            if legal {
                model = to;
                accepted += 1;
            }
            prop_assert_eq!(wf.state(), &model);
        }
        prop_assert_eq!(wf.transitions().len(), accepted);
        prop_assert_eq!(wf.path().len(), accepted + 1);
        prop_assert_eq!(wf.is_finished(), model.is_terminal());
        let entries: usize = kinds.iter().map(|k| wf.attempts(k)).sum();
        prop_assert_eq!(entries, accepted + 1);
    }
}
