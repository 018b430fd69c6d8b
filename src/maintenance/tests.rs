use super::*;

fn at(text: &str) -> Timestamp {
    text.parse().expect("a valid timestamp")
}

fn plan(scope: WindowScope) -> WindowPlan {
    WindowPlan {
        title: "Uppgradering av SAMSA".to_owned(),
        scope,
        starts_at: at("2026-12-08T17:00:00Z"),
        ends_at: at("2026-12-08T21:00:00Z"),
        impact: "SAMSA går inte att nå.".to_owned(),
        advice: String::new(),
        level: Level::One,
        auto_series: true,
    }
}

fn actors(ids: &[&str]) -> WindowScope {
    WindowScope {
        actors: ids.iter().map(|id| (*id).to_owned()).collect(),
        ..WindowScope::default()
    }
}

fn window(state: WindowState, announced_at: &str) -> Window {
    Window {
        incident_id: 7,
        plan: plan(actors(&["kommun-skovde"])),
        state,
        sequence: 0,
        steps_done: BTreeSet::new(),
        silence_ids: Vec::new(),
        approval: None,
        created_by: "Anna".to_owned(),
        created_at: at(announced_at),
        announced_at: Some(at(announced_at)),
        ended_at: None,
        updated_at: at(announced_at),
    }
}

const REMINDERS: [Duration; 2] = [Duration::from_secs(24 * 3600), Duration::from_secs(3600)];

#[test]
fn a_plan_is_checked_field_by_field() {
    let inventory = Inventory::default_samsa();
    let now = at("2026-12-03T10:00:00Z");
    let checked = plan(actors(&["kommun-skovde", "kommun-skovde"]))
        .checked(now, &inventory)
        .expect("a good plan");
    assert_eq!(checked.scope.actors, ["kommun-skovde"]);
    assert_eq!(checked.advice, DEFAULT_ADVICE);

    let mut bad = plan(actors(&["nowhere"]));
    bad.title = "  ".to_owned();
    bad.ends_at = bad.starts_at;
    let problems = bad.checked(now, &inventory).expect_err("problems");
    let fields: Vec<_> = problems.iter().map(|problem| problem.field).collect();
    assert_eq!(fields, ["title", "scope", "ends_at"]);

    let empty = plan(WindowScope::default()).checked(now, &inventory);
    assert_eq!(empty.expect_err("empty scope")[0].field, "scope");

    let mut past = plan(actors(&["kommun-skovde"]));
    past.ends_at = at("2026-12-03T09:00:00Z");
    past.starts_at = at("2026-12-03T08:00:00Z");
    assert_eq!(
        past.checked(now, &inventory).expect_err("over")[0].field,
        "ends_at"
    );

    let mut long = plan(actors(&["kommun-skovde"]));
    long.ends_at = at("2026-12-16T17:00:00Z");
    assert_eq!(
        long.checked(now, &inventory).expect_err("long")[0].field,
        "ends_at"
    );
}

#[test]
fn a_window_covers_alerts_wholly_inside_its_scope() {
    let inventory = Inventory::default_samsa();
    let skovde = actors(&["kommun-skovde"]);
    let actor = |id: &str| AlertScope::Actor(id.to_owned());
    assert!(skovde.covers(&[actor("kommun-skovde")], &inventory));
    assert!(!skovde.covers(&[actor("kommun-boras")], &inventory));
    assert!(!skovde.covers(&[actor("kommun-skovde"), actor("kommun-lerum")], &inventory));
    assert!(!skovde.covers(&[AlertScope::Everything], &inventory));
    assert!(!skovde.covers(&[], &inventory));

    let skaraborg = WindowScope {
        subregions: vec!["skaraborg".to_owned()],
        ..WindowScope::default()
    };
    assert!(skaraborg.covers(&[actor("kommun-skovde")], &inventory));
    assert!(skaraborg.covers(&[AlertScope::Subregion("skaraborg".to_owned())], &inventory));
    assert!(!skaraborg.covers(&[actor("kommun-boras")], &inventory));

    let whole = WindowScope {
        whole_service: true,
        ..WindowScope::default()
    };
    assert!(whole.covers(&[AlertScope::Everything], &inventory));
    assert!(whole.covers(&[actor("kommun-boras")], &inventory));
}

#[test]
fn silences_match_the_scope_within_the_service() {
    let inventory = Inventory::default_samsa();
    let config = MaintenanceConfig::default();
    let incidents = IncidentsConfig::default();
    let service = SilenceMatcher::Equal {
        name: "service".to_owned(),
        value: "samsa".to_owned(),
    };
    let sets = actors(&["kommun-skovde"]).silence_matchers(&config, &incidents, &inventory);
    assert_eq!(
        sets,
        [vec![
            service.clone(),
            SilenceMatcher::OneOf {
                name: "actor".to_owned(),
                values: vec!["kommun-skovde".to_owned()],
            }
        ]]
    );
    let skaraborg = WindowScope {
        subregions: vec!["skaraborg".to_owned()],
        ..WindowScope::default()
    };
    let sets = skaraborg.silence_matchers(&config, &incidents, &inventory);
    assert_eq!(
        sets.len(),
        2,
        "one for its actors, one for the sub-region label"
    );
    let SilenceMatcher::OneOf { values, .. } = &sets[0][1] else {
        panic!("actors of Skaraborg");
    };
    assert!(values.contains(&"kommun-skovde".to_owned()));
    assert!(!values.contains(&"kommun-boras".to_owned()));
    let whole = WindowScope {
        whole_service: true,
        ..WindowScope::default()
    };
    assert_eq!(
        whole.silence_matchers(&config, &incidents, &inventory),
        [vec![service]]
    );
}

#[test]
fn the_series_steps_come_due_in_order() {
    let announced = window(WindowState::Announced, "2026-12-01T10:00:00Z");
    assert_eq!(announced.due(at("2026-12-06T10:00:00Z"), &REMINDERS), None);
    let day_before = at("2026-12-07T17:00:00Z");
    assert_eq!(
        announced.due(day_before, &REMINDERS),
        Some(Step::Reminder {
            before_minutes: 24 * 60
        })
    );
    let mut reminded = announced.clone();
    reminded
        .steps_done
        .extend(reminded.reminders_passed(day_before, &REMINDERS));
    assert_eq!(reminded.due(at("2026-12-08T12:00:00Z"), &REMINDERS), None);
    assert_eq!(
        reminded.due(at("2026-12-08T16:00:00Z"), &REMINDERS),
        Some(Step::Reminder { before_minutes: 60 })
    );
    // Both due at once (the relay was down): only the later one.
    assert_eq!(
        announced.due(at("2026-12-08T16:30:00Z"), &REMINDERS),
        Some(Step::Reminder { before_minutes: 60 })
    );
    assert_eq!(
        announced
            .reminders_passed(at("2026-12-08T16:30:00Z"), &REMINDERS)
            .len(),
        2
    );
    assert_eq!(
        announced.due(at("2026-12-08T17:00:00Z"), &REMINDERS),
        Some(Step::Started)
    );
    assert_eq!(
        announced.due(at("2026-12-08T21:00:00Z"), &REMINDERS),
        Some(Step::Completed),
        "a window that passed unseen is completed, not started"
    );
    let running = window(WindowState::Running, "2026-12-01T10:00:00Z");
    assert_eq!(running.due(at("2026-12-08T20:59:59Z"), &REMINDERS), None);
    assert_eq!(
        running.due(at("2026-12-08T21:00:00Z"), &REMINDERS),
        Some(Step::Completed)
    );
    for state in [
        WindowState::Planned,
        WindowState::Overran,
        WindowState::Completed,
        WindowState::Cancelled,
    ] {
        assert_eq!(
            window(state, "2026-12-01T10:00:00Z").due(at("2026-12-08T21:00:00Z"), &REMINDERS),
            None
        );
    }
}

#[test]
fn a_window_announced_late_skips_the_reminders_already_past() {
    let late = window(WindowState::Announced, "2026-12-08T12:00:00Z");
    assert_eq!(late.due(at("2026-12-08T13:00:00Z"), &REMINDERS), None);
    assert_eq!(
        late.due(at("2026-12-08T16:00:00Z"), &REMINDERS),
        Some(Step::Reminder { before_minutes: 60 })
    );
}

#[test]
fn in_effect_and_on_the_banner() {
    let announced = window(WindowState::Announced, "2026-12-01T10:00:00Z");
    assert!(!announced.in_effect(at("2026-12-08T16:59:59Z")));
    assert!(announced.in_effect(at("2026-12-08T17:00:00Z")));
    assert!(!announced.in_effect(at("2026-12-08T21:00:00Z")));
    let week = Duration::from_secs(48 * 3600);
    assert_eq!(
        announced.banner_phase(at("2026-12-05T10:00:00Z"), week),
        None
    );
    assert_eq!(
        announced.banner_phase(at("2026-12-07T10:00:00Z"), week),
        Some(BannerPhase::Upcoming)
    );
    assert_eq!(
        announced.banner_phase(at("2026-12-08T18:00:00Z"), week),
        Some(BannerPhase::Running)
    );
    assert_eq!(
        announced.banner_phase(at("2026-12-08T21:00:00Z"), week),
        None
    );
    let planned = window(WindowState::Planned, "2026-12-01T10:00:00Z");
    assert!(!planned.in_effect(at("2026-12-08T18:00:00Z")));
    assert_eq!(planned.banner_phase(at("2026-12-08T18:00:00Z"), week), None);
    let overran = window(WindowState::Overran, "2026-12-01T10:00:00Z");
    assert!(!overran.in_effect(at("2026-12-08T18:00:00Z")));
}

#[test]
fn steps_are_kinds_of_notice_and_states_read_back() {
    assert_eq!(Step::Announcement.notice_kind(), NoticeKind::Initial);
    assert_eq!(Step::Started.notice_kind(), NoticeKind::Update);
    assert_eq!(Step::Cancelled.notice_kind(), NoticeKind::Resolved);
    assert_eq!(Step::Reminder { before_minutes: 60 }.key(), "reminder:60");
    assert_eq!(
        Step::Reminder { before_minutes: 60 }.label(),
        "påminnelse 1 timme före"
    );
    for state in WindowState::ALL {
        assert_eq!(WindowState::parse(state.as_str()), Some(*state));
    }
    let json = serde_json::to_value(Step::Reminder { before_minutes: 60 }).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"step": "reminder", "before_minutes": 60})
    );
}

#[test]
fn times_are_read_as_rfc_3339_or_swedish_local_time() {
    assert_eq!(
        parse_time("2026-12-08 18:00").unwrap(),
        at("2026-12-08T17:00:00Z"),
        "winter: UTC+1"
    );
    assert_eq!(
        parse_time("2026-07-01T18:00").unwrap(),
        at("2026-07-01T16:00:00Z"),
        "summer: UTC+2"
    );
    assert_eq!(
        parse_time("2026-12-08T18:00:00+01:00").unwrap(),
        at("2026-12-08T17:00:00Z")
    );
    assert!(parse_time("i morgon").unwrap_err().contains("ÅÅÅÅ-MM-DD"));
    let request = PlanRequest {
        title: "Uppgradering".to_owned(),
        whole_service: false,
        actors: vec!["kommun-skovde".to_owned()],
        subregions: Vec::new(),
        starts_at: "2026-12-08 18:00".to_owned(),
        ends_at: "inte en tid".to_owned(),
        impact: "SAMSA går inte att nå.".to_owned(),
        advice: String::new(),
        level: 4,
        review_each: true,
        requested_by: None,
    };
    let problems = request.clone().into_plan().unwrap_err();
    let fields: Vec<_> = problems.iter().map(|problem| problem.field).collect();
    assert_eq!(fields, ["ends_at", "level"]);
    let plan = PlanRequest {
        ends_at: "2026-12-08 22:00".to_owned(),
        level: 2,
        ..request
    }
    .into_plan()
    .unwrap();
    assert!(!plan.auto_series);
    assert_eq!(plan.level, Level::Two);
}
