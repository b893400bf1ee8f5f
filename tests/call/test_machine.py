"""Every transition of the call machine, driven as the recorder drives it: a Tick every
20 ms, events at their times."""

import dataclasses

import pytest

from appliance.call import machine as m
from appliance.call.profiles import profile
from appliance.dsp.progress import SilenceStarted, SpeechStarted, ToneDetected, ToneEnded
from appliance.events import (
    ButtonPressed,
    ButtonReleased,
    FarEndDisconnect,
    HookFlash,
    OffHook,
    OnHook,
    PolarityReversed,
    PulseDigit,
    RingStarted,
    RingStopped,
)


def drive(events, name="opt-in", until=None, off_hook=False, **rules):
    """Run the machine over (time, event) pairs; return the final state and the timed actions."""
    rule = m.Rules(profile(name), **rules)
    state, first = m.initial(off_hook)
    timed = [(0.0, a) for a in first]
    events = sorted(events, key=lambda pair: pair[0])
    end = until if until is not None else (events[-1][0] + 0.5 if events else 1.0)
    i, now = 0, 0.0
    while now <= end + 1e-9:
        while i < len(events) and events[i][0] <= now + 1e-9:
            state, acts = m.step(state, events[i][1], now, rule)
            timed += [(now, a) for a in acts]
            i += 1
        state, acts = m.step(state, m.Tick(now), now, rule)
        timed += [(now, a) for a in acts]
        now = round(now + 0.02, 6)
    return state, timed


def kinds(timed):
    return [type(a).__name__ for _, a in timed if not isinstance(a, m.SetLed | m.Note)]


def record(timed) -> m.CallRecord:
    ends = [a.record for _, a in timed if isinstance(a, m.EndCall)]
    assert len(ends) == 1, ends
    return ends[0]


def incoming(*rest):
    return [
        (0.0, RingStarted(0.0)),
        (6.1, RingStopped(6.1, True, 2, "US")),
        (6.1, OffHook(6.1)),
        *rest,
    ]


def test_after_the_greeting_the_notice_comes_when_the_answerer_pauses() -> None:
    hello = [(6.3, SpeechStarted(6.3)), (7.4, SilenceStarted(7.4)), (20.0, OnHook(20.0))]
    _, timed = drive(incoming(*hello), announce_after="greeting")
    played = next(t for t, a in timed if isinstance(a, m.PlayAnnouncement))
    assert played == pytest.approx(7.4)
    assert record(timed).announced_at == pytest.approx(7.4)


def test_after_the_greeting_silence_alone_does_not_start_the_notice() -> None:
    """The line is quiet before the answerer speaks: that is no pause after a greeting."""
    quiet_then_long_talk = [(6.2, SilenceStarted(6.2)), (6.5, SpeechStarted(6.5))]
    _, timed = drive(incoming(*quiet_then_long_talk, (20.0, OnHook(20.0))), greeting_max=4.0)
    assert next(t for t, a in timed if isinstance(a, m.PlayAnnouncement)) == pytest.approx(6.6)
    _, timed = drive(
        incoming(*quiet_then_long_talk, (20.0, OnHook(20.0))),
        announce_after="greeting",
        greeting_max=4.0,
    )
    played = next(t for t, a in timed if isinstance(a, m.PlayAnnouncement))
    assert played == pytest.approx(10.1)  # the answerer never paused: at most 4 s


def test_rules_from_the_config(cfg) -> None:
    import dataclasses

    consent = dataclasses.replace(
        cfg.consent, profile="beep", announce_delay_ms=250.0, answer_wait_s=5.0, mute_max_s=60.0
    )
    rules = m.Rules.from_config(consent)
    assert (rules.profile.name, rules.announce_delay, rules.consent_window, rules.mute_max) == (
        "beep",
        0.25,
        5.0,
        60.0,
    )


def test_opt_in_barge_in_press_1_records_from_the_announcement_on() -> None:
    state, timed = drive(incoming((7.5, m.ConsentDigit(7.5, "1", -20.0)), (30.0, OnHook(30.0))))
    assert kinds(timed) == [
        "HoldAudio",
        "PlayAnnouncement",
        "StopPlayback",
        "StartRecording",
        "StopRecording",
        "EndCall",
    ]
    played = next(t for t, a in timed if isinstance(a, m.PlayAnnouncement))
    assert played == pytest.approx(6.6)  # the default 0.5 s after off-hook
    assert next(a for _, a in timed if isinstance(a, m.StartRecording)).include_held
    call = record(timed)
    assert (call.consent, call.recorded, call.digit, call.likely_local) == (
        "granted",
        True,
        "1",
        False,
    )
    assert call.direction == "incoming" and call.announced_at == pytest.approx(6.6)
    assert state.phase is m.Phase.IDLE


def test_opt_in_press_2_drops_everything_and_the_call_goes_on() -> None:
    _state, timed = drive(
        incoming(
            (7.0, m.PlaybackFinished(7.0)),
            (9.0, m.ConsentDigit(9.0, "2", -18.0)),
            (20.0, OnHook(20.0)),
        )
    )
    assert "StartRecording" not in kinds(timed)
    assert kinds(timed)[-2:] == ["DropHeldAudio", "EndCall"]
    call = record(timed)
    assert (call.consent, call.recorded, call.digit) == ("refused", False, "2")


def test_opt_in_silence_repeats_once_then_refuses() -> None:
    events = incoming(
        (11.0, m.PlaybackFinished(11.0)), (23.5, m.PlaybackFinished(23.5)), (40.0, OnHook(40.0))
    )
    _, timed = drive(events)
    plays = [t for t, a in timed if isinstance(a, m.PlayAnnouncement)]
    assert plays == pytest.approx([6.6, 19.0])  # again 8 s after the first ended
    dropped = next(t for t, a in timed if isinstance(a, m.DropHeldAudio))
    assert dropped == pytest.approx(31.5)  # 8 s after the repeat ended
    assert record(timed).consent == "timeout" and "StartRecording" not in kinds(timed)


def test_digits_outside_the_window_do_not_count() -> None:
    events = incoming(
        (7.0, m.ConsentDigit(7.0, "5", -20.0)),
        (7.2, m.ConsentDigit(7.2, "1", -20.0)),
        (9.0, m.ConsentDigit(9.0, "2", -20.0)),
        (12.0, OnHook(12.0)),
    )
    _state, timed = drive(events)
    call = record(timed)
    assert call.consent == "granted" and call.digit == "1"  # 5 ignored, the late 2 too


def test_opt_out_silence_records_and_2_declines() -> None:
    events = incoming((9.0, m.PlaybackFinished(9.0)), (25.0, OnHook(25.0)))
    _, timed = drive(events, "opt-out")
    start = [t for t, a in timed if isinstance(a, m.StartRecording)]
    assert start == pytest.approx([17.0]) and record(timed).consent == "granted"
    _, timed = drive(
        incoming((8.0, m.ConsentDigit(8.0, "2", -15.0)), (25.0, OnHook(25.0))), "opt-out"
    )
    assert record(timed).consent == "refused" and "StartRecording" not in kinds(timed)
    _, timed = drive(
        incoming(
            (8.0, m.ConsentDigit(8.0, "1", -15.0)),
            (9.0, m.PlaybackFinished(9.0)),
            (25.0, OnHook(25.0)),
        ),
        "opt-out",
    )
    assert "StartRecording" in kinds(timed)  # 1 means nothing in opt-out; silence records


@pytest.mark.parametrize(("name", "played"), [("notice", "PlayAnnouncement"), ("beep", "PlayBeep")])
def test_notice_and_beep_record_at_once(name: str, played: str) -> None:
    _, timed = drive(incoming((20.0, OnHook(20.0))), name)
    assert kinds(timed)[:2] == [played, "StartRecording"]
    assert record(timed).consent == "not-asked"


def test_the_beep_every_15_s_not_under_anyones_control() -> None:
    events = incoming(
        (10.0, HookFlash(10.0, 0.5)),
        (12.0, ButtonReleased(12.0, "mute", 0.2)),
        (52.0, OnHook(52.0)),
    )
    _, timed = drive(events, "beep")
    beeps = [t for t, a in timed if isinstance(a, m.PlayBeep)]
    assert beeps == pytest.approx([6.6, 21.6, 36.6, 51.6])
    assert "PauseRecording" not in kinds(timed)  # the tones cover a flash


def test_silent_plays_nothing() -> None:
    _, timed = drive(incoming((20.0, OnHook(20.0))), "silent")
    assert kinds(timed)[0] == "StartRecording"
    assert not any(isinstance(a, m.PlayAnnouncement | m.PlayBeep) for _, a in timed)


def granted(*rest):
    return incoming((7.0, m.ConsentDigit(7.0, "1", -20.0)), *rest)


def test_withdrawal_stops_and_keeps_what_was_consented() -> None:
    _, timed = drive(granted((20.0, m.WithdrawalDetected(20.0)), (30.0, OnHook(30.0))))
    stop = next(a for _, a in timed if isinstance(a, m.StopRecording))
    assert stop.keep and record(timed).consent == "withdrawn"
    _, timed = drive(
        granted((20.0, m.WithdrawalDetected(20.0)), (30.0, OnHook(30.0))), keep_on_withdraw=False
    )
    assert not next(a for _, a in timed if isinstance(a, m.StopRecording)).keep
    assert not record(timed).recorded


def test_mute_toggles_and_its_spans_are_kept() -> None:
    events = granted(
        (10.0, ButtonReleased(10.0, "mute", 0.2)),
        (14.0, ButtonReleased(14.0, "mute", 0.2)),
        (20.0, OnHook(20.0)),
    )
    _, timed = drive(events)
    assert kinds(timed).count("MuteRecording") == 1 and kinds(timed).count("UnmuteRecording") == 1
    assert record(timed).muted_spans == ((10.0, 14.0),)


def test_mute_resumes_by_itself_with_a_warning_first() -> None:
    events = granted((10.0, ButtonReleased(10.0, "mute", 0.2)), (80.0, OnHook(80.0)))
    _, timed = drive(events, mute_max=60.0, mute_warning=10.0)
    blink = [t for t, a in timed if a == m.SetLed("mute", "blink")]
    unmute = [t for t, a in timed if isinstance(a, m.UnmuteRecording)]
    assert blink == pytest.approx([60.0]) and unmute == pytest.approx([70.0])


def test_holding_mute_3_s_discards_the_recording_before_release() -> None:
    events = granted(
        (10.0, ButtonPressed(10.0, "mute")),
        (14.0, ButtonReleased(14.0, "mute", 4.0)),
        (20.0, OnHook(20.0)),
    )
    _, timed = drive(events)
    stop = [(t, a) for t, a in timed if isinstance(a, m.StopRecording)]
    assert len(stop) == 1 and stop[0][0] == pytest.approx(13.0) and not stop[0][1].keep
    assert "MuteRecording" not in kinds(timed) and not record(timed).recorded


def test_a_flash_pauses_until_the_notice_is_given_again() -> None:
    events = granted(
        (10.0, HookFlash(10.0, 0.5)),
        (15.0, ButtonReleased(15.0, "mute", 0.2)),
        (20.0, OnHook(20.0)),
    )
    _, timed = drive(events)
    assert kinds(timed)[4:7] == ["PauseRecording", "PlayAnnouncement", "ResumeRecording"]
    _, timed = drive(
        granted((10.0, HookFlash(10.0, 0.5)), (20.0, OnHook(20.0))), replay_after_flash=True
    )
    assert "PauseRecording" not in kinds(timed) and kinds(timed).count("PlayAnnouncement") == 2


@pytest.mark.parametrize(
    "ending", [FarEndDisconnect(20.0), ToneDetected(20.0, "reorder"), ToneDetected(20.0, "dial")]
)
def test_the_far_end_hangs_up_then_the_handset(ending) -> None:
    state, timed = drive(granted((20.0, ending), (25.0, OnHook(25.0))))
    assert kinds(timed)[-2:] == ["StopRecording", "EndCall"]
    assert record(timed).ended_at == pytest.approx(20.0)
    assert state.phase is m.Phase.IDLE


def test_a_long_silence_ends_a_call_without_cpc_or_tones() -> None:
    _, timed = drive(
        granted((30.0, SilenceStarted(30.0)), (200.0, OnHook(200.0))), silence_ends_call=60.0
    )
    assert record(timed).ended_at == pytest.approx(90.0)


def test_speech_resets_the_silence() -> None:
    events = granted(
        (30.0, SilenceStarted(30.0)), (60.0, SpeechStarted(60.0)), (100.0, OnHook(100.0))
    )
    _, timed = drive(events, silence_ends_call=60.0)
    assert record(timed).ended_at == pytest.approx(100.0)


def test_the_call_waiting_alert_changes_nothing() -> None:
    _, timed = drive(granted((15.0, ToneDetected(15.0, "call_waiting")), (20.0, OnHook(20.0))))
    assert kinds(timed).count("PlayAnnouncement") == 1 and record(timed).consent == "granted"


def test_a_fax_gets_no_announcement_and_no_recording() -> None:
    _, timed = drive(incoming((6.3, ToneDetected(6.3, "fax_calling")), (20.0, OnHook(20.0))))
    assert "PlayAnnouncement" not in kinds(timed) and not record(timed).recorded
    _, timed = drive(incoming((7.0, ToneDetected(7.0, "answer_tone")), (20.0, OnHook(20.0))))
    assert "DropHeldAudio" in kinds(timed) and "StartRecording" not in kinds(timed)


def outgoing(*rest):
    return [(0.0, OffHook(0.0)), (1.0, PulseDigit(1.0, "5")), (2.0, m.DialedDigit(2.0, "#")), *rest]


@pytest.mark.parametrize(
    "answer",
    [
        [(8.0, PolarityReversed(8.0))],
        [(7.0, ToneEnded(7.0, "ringback")), (8.0, SpeechStarted(8.0))],
        [(8.0, ButtonReleased(8.0, "mute", 0.3))],
    ],
)
def test_outgoing_calls_announce_on_answer(answer) -> None:
    _, timed = drive(
        outgoing(*answer, (9.0, m.ConsentDigit(9.0, "1", -22.0)), (20.0, OnHook(20.0)))
    )
    played = next(t for t, a in timed if isinstance(a, m.PlayAnnouncement))
    assert played == pytest.approx(8.0)
    call = record(timed)
    assert (call.direction, call.dialed, call.consent) == ("outgoing", "5#", "granted")


def test_ringback_that_resumes_is_no_answer_yet() -> None:
    events = outgoing(
        (6.0, ToneEnded(6.0, "ringback")),
        (10.0, ToneDetected(10.0, "ringback")),
        (10.5, SpeechStarted(10.5)),
        (20.0, OnHook(20.0)),
    )
    _, timed = drive(events)
    assert "PlayAnnouncement" not in kinds(timed)


def test_speech_long_after_ringback_is_not_an_answer() -> None:
    events = outgoing(
        (7.0, ToneEnded(7.0, "ringback")), (15.0, SpeechStarted(15.0)), (20.0, OnHook(20.0))
    )
    _, timed = drive(events)
    assert "PlayAnnouncement" not in kinds(timed)


def test_a_missed_call_is_a_record_too() -> None:
    _, timed = drive([(0.0, RingStarted(0.0)), (13.0, RingStopped(13.0, False, 3, "US"))])
    call = record(timed)
    assert (call.consent, call.recorded) == ("not-asked", False) and "missed" in call.reason


def test_hanging_up_while_asked_drops_the_held_audio() -> None:
    _, timed = drive(incoming((7.5, OnHook(7.5))))
    assert kinds(timed)[-3:] == ["DropHeldAudio", "StopPlayback", "EndCall"]
    assert record(timed).consent == "timeout"


def test_a_start_during_a_call_neither_announces_nor_records() -> None:
    _state, timed = drive(
        [(5.0, OnHook(5.0)), (8.0, OffHook(8.0)), (9.0, OnHook(9.0))], off_hook=True
    )
    notes = [a.text for _, a in timed if isinstance(a, m.Note)]
    assert notes and "neither announced nor recorded" in notes[0]
    assert sum(isinstance(a, m.EndCall) for _, a in timed) == 1  # only the later, new call
    assert not any(isinstance(a, m.StartRecording | m.PlayAnnouncement) for _, a in timed)


def test_a_loud_digit_is_flagged_as_likely_the_local_handset() -> None:
    _, timed = drive(incoming((7.0, m.ConsentDigit(7.0, "1", -4.0)), (10.0, OnHook(10.0))))
    assert record(timed).likely_local is True


def test_consent_digits_are_wanted_only_while_asking() -> None:
    rule = m.Rules(profile("opt-in"))
    state, _ = m.initial(False)
    seen = []
    for t, event in incoming((7.0, m.ConsentDigit(7.0, "1", -20.0))):
        state, _ = m.step(state, event, t, rule)
        state, _ = m.step(state, m.Tick(t + 0.6), t + 0.6, rule)
        seen.append(state.wants_consent_digits)
    assert seen == [False, False, True, False]


def test_a_recorder_stopping_mid_call_keeps_the_recording_and_ends_the_record() -> None:
    events = incoming((7.5, m.ConsentDigit(7.5, "1", -20.0)), (20.0, m.RecorderStopping(20.0)))
    state, timed = drive(events)
    stop = next(a for _, a in timed if isinstance(a, m.StopRecording))
    assert stop.keep and stop.reason == "the recorder stopped"
    call = record(timed)
    assert (call.consent, call.recorded, call.ended_at) == ("granted", True, 20.0)
    assert state.phase is m.Phase.CLEARING  # the next call starts from on-hook


def test_a_recorder_stopping_between_calls_changes_nothing() -> None:
    state, timed = drive([(1.0, m.RecorderStopping(1.0))])
    assert state.phase is m.Phase.IDLE and kinds(timed) == []


def test_a_caller_on_the_never_announce_list_is_neither_announced_nor_recorded() -> None:
    events = incoming((9.0, OnHook(9.0)))
    events.insert(1, (3.0, m.CallerIdentified(3.0, "4533123456", None)))
    _, timed = drive(events, never_announce=frozenset({"4533123456"}))
    assert "PlayAnnouncement" not in kinds(timed)
    call = record(timed)
    assert (call.caller_number, call.recorded) == ("4533123456", False)
    assert call.reason == "on the never-announce list: no announcement"


def test_never_announce_matches_the_same_number_with_or_without_a_prefix() -> None:
    rules = m.Rules(profile("opt-in"), never_announce=frozenset({"4533123456", "911"}))
    call = m.CallRecord("incoming", 0.0, "opt-in")
    assert m.never_announced(dataclasses.replace(call, caller_number="33123456"), rules)
    assert m.never_announced(dataclasses.replace(call, caller_number="004533123456"), rules)
    assert m.never_announced(dataclasses.replace(call, dialed="911"), rules)
    assert not m.never_announced(dataclasses.replace(call, caller_number="3456"), rules)
    assert not m.never_announced(dataclasses.replace(call, dialed="9110"), rules)
    assert not m.never_announced(call, rules)


def test_caller_id_after_the_answer_is_kept_but_a_late_one_on_another_phase_is_not() -> None:
    events = incoming((6.3, m.CallerIdentified(6.3, "5551234567", "SMITH")), (9.0, OnHook(9.0)))
    _, timed = drive(events)
    assert record(timed).caller_number == "5551234567"
    _, timed = drive([(1.0, m.CallerIdentified(1.0, "5551234567", None))])
    assert timed == [(0.0, a) for a in m.initial(False)[1]]  # idle: nothing to attach it to


def test_the_announcement_waits_while_a_fax_tone_is_being_recognised() -> None:
    sounding = [(t, m.MachineToneSounding(t)) for t in (6.3, 6.4, 6.5, 6.6, 6.7)]
    fax = (6.75, ToneDetected(6.2, "fax_calling"))
    _, timed = drive(incoming(*sounding, fax, (12.0, OnHook(12.0))))
    assert "PlayAnnouncement" not in kinds(timed)
    assert record(timed).reason == "a fax or modem call: no announcement"
    _, timed = drive(incoming(*sounding, (12.0, OnHook(12.0))))  # a blip, not a fax
    played = next(t for t, a in timed if isinstance(a, m.PlayAnnouncement))
    assert played == pytest.approx(7.0)  # 0.3 s after the tone was last heard
