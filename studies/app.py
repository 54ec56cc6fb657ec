"""The participant app of the user study (Streamlit). No torch anywhere in its imports.

    streamlit run studies/app.py -- --db sqlite:///study.sqlite --materials materials/ [--study ID]

or set STYLEX_STUDY_DB / STYLEX_STUDY_MATERIALS / STYLEX_STUDY_ID (command-line values win). Optional:
STYLEX_PROLIFIC_URL (completion link; "{code}" in it is replaced by the code) and STYLEX_PROLIFIC_CODE (one
study-wide completion code instead of a random code per participant). Screening, each as a script argument or an
environment variable:

* ``--comprehension-failures N`` / STYLEX_STUDY_COMPREHENSION_FAILURES: screen a participant out after N failed
  attempts at the comprehension check (default 3; ``off``: never, the check repeats until passed);
* ``--attention-failures N`` / STYLEX_STUDY_ATTENTION_FAILURES: screen out after N wrongly answered attention trials
  (default ``off``: record everything and exclude in the analysis, as the paper did);
* ``--return-url URL`` / STYLEX_PROLIFIC_RETURN_URL: the link a screened-out participant gets back to the platform,
  e.g. Prolific's ``https://app.prolific.com/submissions/complete?cc=<screen-out code>``.

Participants arrive with ``?PROLIFIC_PID=...&part=coherence|description|forward`` (and Prolific's ``SESSION_ID``). All
progress lives in the database (see studies/db.py): consent creates the participant and the whole trial plan, every
screen shows the first unanswered trial, so a reload resumes. The participant id is bound to the first browser that
consents with it: the app puts a random ``session_token`` in that browser's URL, and a later visit needs that token
or the same SESSION_ID; another browser gets one line saying so, never the trials or the completion code
(``stylex study release`` frees the id). The browser only ever gets neutral captions and GIF bytes (served under
content-hash URLs); asset file names, methods, attributes and the answer keys stay on the server.

Part 3 (``part=forward``, forward simulation): consent assigns a group by arrival order (``forward.assign_group``),
the plan is the group's learning screens (attribute GIFs labelled with the class they push toward; none for the
control group unless the materials have the random baseline) and then still test images, each answered with one
button per class. The classifier's decision on a test image is the answer key and stays in the database. A control
participant without learning screens reads instructions and comprehension questions about the test phase only
(``text.task_key``).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # `streamlit run studies/app.py` puts studies/ on sys.path, not the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamlit as st

from studies import db
from studies.design import participant_seed, plan_trials
from studies.manifest import asset_paths, load_manifest
from studies.text import (
    COMPREHENSION,
    CONSENT_TASK,
    INSTRUCTIONS,
    MAX_WORDS,
    DescriptionError,
    check_description,
    comprehension_mistakes,
    normalize_text,
    question_options,
    task_key,
    words,
)
from stylex.errors import UserError

PID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TOKEN_PARAM = "session_token"
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{32,64}$")
MAX_CHARS = 40
DEFAULT_COMPREHENSION_FAILURES = 3
PART1_CAPTIONS = ("Reference 1", "Reference 2", "A", "B")
PART2_CAPTIONS = ("Example 1", "Example 2", "Example 3", "Example 4")


@dataclass(frozen=True)
class Config:
    db_url: str | None
    materials: str | None
    study_id: str | None
    comprehension_failures: int | None = DEFAULT_COMPREHENSION_FAILURES  # None: never screen out
    attention_failures: int | None = None  # None: never screen out (record, exclude in the analysis)
    return_url: str | None = None


def _failure_limit(value: str | None, option: str, default: int | None) -> int | None:
    """A screening limit: unset -> ``default``, "off" -> None (never screen out), else a whole number >= 1."""
    if value is None or not value.strip():
        return default
    if value.strip().lower() == "off":
        return None
    if not value.strip().isdigit() or int(value) < 1:
        raise UserError(f"{option} must be a whole number of failures, 1 or more, or 'off'; got {value!r}")
    return int(value)


def read_config(argv: list[str] | None = None) -> Config:
    """Script arguments (after ``--``, or all of them under ``streamlit run``), then environment variables; a bad
    screening value is a UserError naming the option."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        argv = argv[argv.index("--") + 1:]
    parser = argparse.ArgumentParser(add_help=False)
    for option in ("--db", "--materials", "--study", "--comprehension-failures", "--attention-failures",
                   "--return-url"):
        parser.add_argument(option)
    args, _ = parser.parse_known_args(argv)
    env = os.environ.get
    return_url = args.return_url or env("STYLEX_PROLIFIC_RETURN_URL") or None
    if return_url is not None and not re.fullmatch(r"https?://[^\s]+", return_url):
        raise UserError(f"--return-url / STYLEX_PROLIFIC_RETURN_URL must be an http(s) URL, got {return_url!r}")
    return Config(db_url=args.db or env("STYLEX_STUDY_DB"),
                  materials=args.materials or env("STYLEX_STUDY_MATERIALS"),
                  study_id=args.study or env("STYLEX_STUDY_ID"),
                  comprehension_failures=_failure_limit(
                      args.comprehension_failures or env("STYLEX_STUDY_COMPREHENSION_FAILURES"),
                      "--comprehension-failures / STYLEX_STUDY_COMPREHENSION_FAILURES",
                      DEFAULT_COMPREHENSION_FAILURES),
                  attention_failures=_failure_limit(args.attention_failures or env("STYLEX_STUDY_ATTENTION_FAILURES"),
                                                    "--attention-failures / STYLEX_STUDY_ATTENTION_FAILURES", None),
                  return_url=return_url)


@st.cache_resource(show_spinner=False)
def _engine(url: str):
    """One Engine per database URL (the URL is the cache key, so tests on different files never share one).

    The database must already exist with the study schema (`stylex study build` makes it): a mistyped URL must not
    leave an empty database behind, so nothing is created here."""
    db.check_database_file(url)
    engine = db.get_engine(url)
    db.check_schema(engine)
    return engine


@st.cache_resource(show_spinner=False)
def _materials(folder: str) -> tuple[str | None, dict[str, Path]]:
    """(the manifest's study id, asset_id -> file), verified against the sha256s once per process and folder."""
    return load_manifest(folder).get("study_id"), asset_paths(folder)


@st.cache_data(show_spinner=False, max_entries=512)
def _gif(path: str) -> bytes:
    return Path(path).read_bytes()


def _fail(message: str) -> None:
    st.error(message)
    st.stop()


def _flash(kind: str, message: str) -> None:
    st.session_state["flash"] = (kind, message)


# ------------------------------------------------------------------------------------------------------ callbacks


def _on_consent(url: str, study_id: str, pid: str, part: str, token: str, platform_session: str | None) -> None:
    if not st.session_state.get("consent-box"):
        _flash("warning", "Please tick the box to confirm that you agree to take part.")
        return
    engine = _engine(url)
    try:
        participant_id = db.get_or_create_participant(engine, study_id, pid, part, participant_seed(study_id, pid))
        if not db.bind_session(engine, participant_id, token, platform_session):
            return  # another browser consented with this id first: the page now says so
        participant = db.get_participant(engine, participant_id)
        items, key = db.study_items(engine, study_id)
        if participant["part"] == "forward":
            from studies.forward import forward_participant_plan  # scipy: Part 3 only

            plan = forward_participant_plan(engine, study_id, participant_id, participant["seed"], items, key)
        else:
            plan = plan_trials(items, participant["part"], participant["seed"],
                               key if participant["part"] == "coherence" else None)
        if db.add_trials(engine, participant_id, plan):
            db.log_event(engine, "consent", participant_id, {"part": participant["part"], "trials": len(plan)})
    except UserError as err:
        db.log_event(engine, "consent_error", None, {"pid": pid, "error": str(err)})
        _flash("error", "The study could not be started. Please contact the researchers.")


def _on_start(pid: str) -> None:
    st.session_state[f"instructed-{pid}"] = True


def _on_comprehension(url: str, participant_id: int, pid: str, task: str, attempt: int,
                      max_failures: int | None) -> None:
    """Check the answers of attempt ``attempt`` (bound when the form was rendered, and in its widget keys, so a
    double submit or an old form counts once: db.record_comprehension ignores a stale attempt) to the questions of
    ``task`` (``text.task_key``)."""
    answers = {q.question_id: st.session_state.get(f"comprehension-{attempt}-{q.question_id}")
               for q in COMPREHENSION[task]}
    if any(answer is None for answer in answers.values()):
        _flash("warning", "Please answer every question.")
        return
    outcome = db.record_comprehension(_engine(url), participant_id, attempt, comprehension_mistakes(task, answers),
                                      max_failures)
    if outcome == "passed":
        _flash("success", "Thank you. The study starts now.")
    elif outcome == "failed":
        st.session_state[f"instructed-{pid}"] = False  # back to the instructions
        left = None if max_failures is None else max_failures - attempt
        tries = "" if left is None else f" You have {left} more {'try' if left == 1 else 'tries'}."
        _flash("warning", "Some of your answers do not match the instructions. Please read them again, then answer "
                          "the questions once more." + tries)


ALREADY_RECORDED = ("Your answer to the previous screen had already been recorded, so that click was not counted "
                    "again. This is the next screen: please answer it.")
NOTHING_RECORDED = "No answer has been recorded for this screen yet: please answer it and press Submit."


def _on_submit(url: str, part: str, trial_id: int, kind: str, participant_id: int,
               attention_failures: int | None, prediction: str | None = None) -> None:
    """Validate and store the answer of the trial this form was rendered for (``trial_id`` is bound when the form is
    rendered, and the form's widgets are keyed by it, so a submit can only ever answer that trial). With attention
    screening on, a wrong attention answer that reaches the limit screens the participant out.

    A submit for a trial that already has an answer (a double click, a click on the previous screen's button while
    the next one renders, a second tab) records nothing and says so: never a silent drop. Part 3: ``prediction``
    is the class of the button pressed (bound when rendered), None for a learning screen's Continue."""
    st.session_state["submit-handled"] = True
    engine = _engine(url)
    if db.get_participant(engine, participant_id)["status"] == "screened_out":
        return  # a form still open in a second tab of this browser: the page now shows the end screen
    if db.is_answered(engine, trial_id):
        db.log_event(engine, "duplicate_submit", participant_id, {"trial_id": trial_id})
        _flash("info", ALREADY_RECORDED)
        return
    if part == "coherence":
        choice = st.session_state.get(f"choice-{trial_id}")
        if choice not in db.OPTIONS:
            _flash("warning", "Please choose A or B before submitting.")
            return
        stored = db.record_choice(engine, trial_id, choice)
    elif part == "forward":
        try:
            stored = db.record_prediction(engine, trial_id, prediction)
        except UserError as err:  # a button of another plan's classes: cannot come from this app's pages
            db.log_event(engine, "invalid_prediction", participant_id, {"trial_id": trial_id, "error": str(err)})
            _flash("error", "That answer could not be recorded. Please answer this screen again.")
            return
    else:
        text = st.session_state.get(f"text-{trial_id}") or ""
        try:
            norm = check_description(text, MAX_WORDS, MAX_CHARS)
        except DescriptionError as err:
            db.log_event(engine, "invalid_text", participant_id, {"trial_id": trial_id, "chars": len(text),
                                                                  "words": len(words(normalize_text(text)))})
            _flash("error", str(err))
            return
        stored = db.record_description(engine, trial_id, text, norm)
    if not stored:  # answered by a concurrent request between the check above and the insert
        db.log_event(engine, "duplicate_submit", participant_id, {"trial_id": trial_id})
        _flash("info", ALREADY_RECORDED)
        return
    if kind == "attention" and attention_failures is not None:
        db.screen_out_on_attention(engine, participant_id, attention_failures)
    if kind == "practice":
        right = db.response_correct(engine, trial_id)
        _flash("success" if right else "info",
               "Well done, that is the expected answer. The real trials start now." if right else
               "Not quite: the expected option shows the same kind of change as the two reference GIFs. "
               "The real trials start now.")


# ----------------------------------------------------------------------------------------------------------- pages


def _consent_page(url: str, study_id: str, pid: str, part: str, token: str, platform_session: str | None) -> None:
    st.title("Welcome")
    st.markdown(
        "You are invited to take part in a short research study about how people perceive changes in images.\n\n"
        f"- {CONSENT_TASK[part]}\n"
        "- It takes about 10-15 minutes. Taking part is voluntary and you may stop at any time.\n"
        "- We store your Prolific ID, your answers and response times, for research only. "
        "No other personal data is collected."
    )
    st.checkbox("I have read the information above and agree to take part.", key="consent-box")
    st.button("Start", type="primary", key="consent-button", on_click=_on_consent,
              args=(url, study_id, pid, part, token, platform_session))


def _instructions_page(task: str, pid: str) -> None:
    st.title("Instructions")
    st.markdown(INSTRUCTIONS[task] + "\n\nNext, a few questions check that the task is clear.")
    st.button("Continue", type="primary", key="begin-button", on_click=_on_start, args=(pid,))


def _comprehension_page(config: Config, participant: dict, pid: str, task: str) -> None:
    attempt = participant["comprehension_tries"] + 1
    st.title("A few questions about the task")
    st.markdown("Please answer these questions about the instructions before the study starts.")
    with st.form(f"comprehension-{attempt}", clear_on_submit=False):
        for question in COMPREHENSION[task]:
            st.radio(question.prompt, question_options(question, participant["seed"]), index=None,
                     key=f"comprehension-{attempt}-{question.question_id}")
        st.form_submit_button("Check my answers", type="primary", on_click=_on_comprehension,
                              args=(config.db_url, participant["id"], pid, task, attempt,
                                    config.comprehension_failures))


def _trial_page(url: str, part: str, trial: dict, paths: dict[str, Path], participant_id: int,
                attention_failures: int | None) -> None:
    trial_id = trial["trial_id"]
    missing = [a for a in trial["assets"] if a not in paths]
    if missing:
        db.log_event(_engine(url), "missing_asset", participant_id, {"trial_id": trial_id, "assets": missing})
        _fail("This study's materials are incomplete. Please contact the researchers.")
    db.mark_shown(_engine(url), trial_id)
    # A rerun of the same screen that no Submit handler saw (a click on a button of a screen that has gone, a
    # reconnect): say that nothing was recorded, so the participant is never left guessing.
    previous, handled = st.session_state.pop("rendered-trial", None), st.session_state.pop("submit-handled", False)
    if previous == trial_id and not handled:
        st.info(NOTHING_RECORDED)
    st.session_state["rendered-trial"] = trial_id
    n_done, n_total = trial["n_done"], trial["n_total"]
    st.progress(n_done / n_total if n_total else 0.0, text=f"Screen {n_done + 1} of {n_total}")
    if part == "forward":
        _forward_screen(url, trial, paths, participant_id)
        return
    if trial["kind"] == "practice":
        st.info("Practice round")
    captions = PART1_CAPTIONS if part == "coherence" else PART2_CAPTIONS
    for column, asset_id, caption in zip(st.columns(4), trial["assets"], captions, strict=True):
        with column:
            st.image(_gif(str(paths[asset_id])), caption=caption)  # bytes: animated, no file name sent
    with st.form(f"t{trial_id}", clear_on_submit=False):
        if part == "coherence":
            st.radio("Which option shows the same kind of change as the two references?", list(db.OPTIONS),
                     index=None, horizontal=True, key=f"choice-{trial_id}")
        else:
            st.text_input(f"Describe the most prominent change in 1 to {MAX_WORDS} words", max_chars=MAX_CHARS,
                          key=f"text-{trial_id}")  # checked and normalised by studies.text.check_description
        st.form_submit_button("Submit", type="primary", on_click=_on_submit,
                              args=(url, part, trial_id, trial["kind"], participant_id, attention_failures))


def _forward_screen(url: str, trial: dict, paths: dict[str, Path], participant_id: int) -> None:
    """A Part 3 screen: a learning screen (the attribute's GIFs and the class they push toward, then Continue) or a
    test image with one button per class. Only the class names reach the page, never which one is the answer."""
    trial_id, assets = trial["trial_id"], trial["assets"]
    args = (url, "forward", trial_id, trial["kind"], participant_id, None)
    if trial["kind"] == "learn":
        st.markdown(f"These images change in a way that pushes the classifier toward **{trial['target_class']}**.")
        for column, asset_id in zip(st.columns(len(assets)), assets, strict=True):
            with column:
                st.image(_gif(str(paths[asset_id])))
        with st.form(f"t{trial_id}", clear_on_submit=False):
            st.form_submit_button("Continue", type="primary", on_click=_on_submit, args=args)
        return
    st.image(_gif(str(paths[assets[0]])), output_format="PNG")  # the GIFs' size; lossless, never a JPEG
    with st.form(f"t{trial_id}", clear_on_submit=False):
        st.markdown("**Which class will the classifier say?**")
        classes = db.forward_classes(_engine(url), participant_id)
        for k, (column, name) in enumerate(zip(st.columns(len(classes)), classes, strict=True)):
            with column:
                st.form_submit_button(name, key=f"predict-{trial_id}-{k}", on_click=_on_submit, args=(*args, name))


def _completion_code() -> str:
    return os.environ.get("STYLEX_PROLIFIC_CODE") or secrets.token_hex(4).upper()


def _debrief_page(code: str) -> None:
    st.title("Thank you!")
    st.markdown("You have finished the study. Your completion code is:")
    st.code(code, language=None)
    link = os.environ.get("STYLEX_PROLIFIC_URL")
    if link:
        st.link_button("Return to Prolific", link.replace("{code}", code), type="primary")
    else:
        st.markdown("Please enter this code on Prolific to confirm that you took part.")


def _screened_out_page(return_url: str | None) -> None:
    st.title("Thank you for your time")
    st.markdown("Some of the check questions were not answered as the instructions describe, so the study ends "
                "here. We are sorry that you cannot continue.")
    if return_url:
        st.markdown("Please go back to Prolific with the button below.")
        st.link_button("Return to Prolific", return_url, type="primary")
    else:
        st.markdown("Please go back to Prolific and return the study there.")


SESSION_IN_USE = ("This participant ID is already taking part in another browser. Please continue there, or "
                  "contact the researchers if you can no longer open it.")


def _session_token() -> str:
    """This browser's token: the one in its URL (a reload, or a link copied within this browser), else a new one put
    into the URL, so a reload keeps it. Only a token the server stored for the participant ever lets a visit in."""
    token = st.query_params.get(TOKEN_PARAM) or st.session_state.get("session-token")
    if not token or not TOKEN_RE.fullmatch(token):
        token = secrets.token_urlsafe(32)
    st.session_state["session-token"] = token
    if st.query_params.get(TOKEN_PARAM) != token:
        st.query_params[TOKEN_PARAM] = token
    return token


def _check_session(engine, participant: dict, token: str, platform_session: str | None) -> None:
    """Stop here, with one line, unless this visit is the browser session the participant is bound to (binding a
    participant that has none: one from before sessions were bound, or released by `stylex study release`)."""
    if db.session_matches(participant, token, platform_session):
        return
    if participant["session_token"] is None and db.bind_session(engine, participant["id"], token, platform_session):
        return
    if not st.session_state.get("session-refused-logged"):
        st.session_state["session-refused-logged"] = True
        db.log_event(engine, "session_refused", participant["id"], {"platform_session_id": platform_session})
    _fail(SESSION_IN_USE)


def main() -> None:
    st.set_page_config(page_title="Image study", layout="wide", initial_sidebar_state="collapsed")
    try:
        config = read_config()
    except UserError as err:
        print(f"study app: {err}", file=sys.stderr)  # for the researchers, in the server's log
        _fail("This study is not configured correctly. Please contact the researchers.")
    if not config.db_url or not config.materials:
        _fail("This study is not configured yet. Please contact the researchers.")
    pid = st.query_params.get("PROLIFIC_PID") or st.session_state.get("pid")
    if not pid or not PID_RE.fullmatch(pid):
        _fail("This link is missing a valid participant ID. Please open the study from Prolific.")
    st.session_state["pid"] = pid
    part = st.query_params.get("part") or st.session_state.get("part") or "coherence"
    if part not in db.PARTS:
        _fail("This link names an unknown part of the study. Please open the study from Prolific.")
    st.session_state["part"] = part
    platform_session = st.query_params.get("SESSION_ID") or st.session_state.get("platform-session")
    if platform_session is not None and not PID_RE.fullmatch(platform_session):
        _fail("This link has an invalid session ID. Please open the study from Prolific.")
    st.session_state["platform-session"] = platform_session
    token = _session_token()

    try:
        engine = _engine(config.db_url)
        manifest_study, paths = _materials(config.materials)
    except UserError as err:
        print(f"study app: {err}", file=sys.stderr)  # e.g. a database of an older schema: the fix is in the message
        _fail("The study is unavailable at the moment. Please contact the researchers.")
    study_id = config.study_id or manifest_study
    if not study_id or not db.study_exists(engine, study_id):
        _fail("The study is unavailable at the moment. Please contact the researchers.")

    flash = st.session_state.pop("flash", None)
    if flash:
        getattr(st, flash[0])(flash[1])

    participant = db.find_participant(engine, study_id, pid)
    if participant is None:
        _consent_page(config.db_url, study_id, pid, part, token, platform_session)
        return
    _check_session(engine, participant, token, platform_session)
    part = participant["part"]  # a returning id keeps the part it consented to
    if participant["status"] == "screened_out":
        _screened_out_page(config.return_url)
        return
    if participant["status"] == "completed":
        _debrief_page(participant["completion_code"])
        return
    trial = db.next_trial(engine, participant["id"])
    if trial is None and not db.count_trials(engine, participant["id"]):
        _fail("The study could not be started. Please contact the researchers.")
    if trial is None:
        try:
            code = db.finish(engine, participant["id"], _completion_code)
        except UserError:
            _fail("The study could not be completed. Please contact the researchers.")
        _debrief_page(code)
        return
    # Instructions, then the comprehension check, until it is passed
    if db.awaits_comprehension(participant, trial):
        # a Part 3 plan starts with its learning screens, if it has any (a control group may have none)
        task = task_key(part, learning_screens=trial["kind"] == "learn")
        if st.session_state.get(f"instructed-{pid}"):
            _comprehension_page(config, participant, pid, task)
        else:
            _instructions_page(task, pid)
        return
    _trial_page(config.db_url, part, trial, paths, participant["id"], config.attention_failures)


if __name__ == "__main__":
    main()
