"""The progress bar of `thunder ingest`, `thunder train` and `thunder demo`.

While the run executes, a thread reads the run's new events from the instance (the same event
log the UI shows) and redraws one terminal line: a bar over the run's steps, the steps done,
and the running step's latest log line ("trial 2 (3/4) epoch 1/3: ... 0.8 min left"). It draws
only on a terminal; piped output keeps Dagster's own log lines.
"""

import shutil
import threading
import uuid

import dagster as dg

STEP_ENDS = {
    dg.DagsterEventType.STEP_SUCCESS,
    dg.DagsterEventType.STEP_FAILURE,
    dg.DagsterEventType.STEP_SKIPPED,
}
UNRESOLVED = "[?]"
BAR_WIDTH = 24


class StepCount:
    """Steps of one run: the planned ones, with each unresolved mapped step ([?]) standing for
    however many of its copies have been seen."""

    def __init__(self, planned: list[str]):
        self.planned = set(planned)
        self.seen: set[str] = set()
        self.ended: set[str] = set()

    def _base(self, key: str) -> str | None:
        base = key.split("[", 1)[0]
        return base if key.endswith("]") and f"{base}{UNRESOLVED}" in self.planned else None

    @property
    def total(self) -> int:
        total = 0
        for key in self.planned:
            if key.endswith(UNRESOLVED):
                base = key[: -len(UNRESOLVED)]
                total += max(1, sum(1 for seen in self.seen if self._base(seen) == base))
            else:
                total += 1
        return max(total, len(self.ended))

    def started(self, key: str) -> None:
        self.seen.add(key)

    def finished(self, key: str) -> None:
        self.seen.add(key)
        self.ended.add(key)


def render(count: StepCount, running: str, message: str, width: int) -> str:
    total = count.total
    done = len(count.ended)
    filled = BAR_WIDTH * done // total if total else 0
    line = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total} steps"
    if running:
        line += f"  {running}: {message}" if message else f"  {running}"
    return line[: max(20, width - 1)]


class RunProgress:
    """Draws the bar of the run tagged `tag` (key, value) on `stream` until stopped."""

    def __init__(self, instance: dg.DagsterInstance, tag: tuple[str, str], stream, every=0.5):
        self.instance = instance
        self.tag = tag
        self.stream = stream
        self.every = every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._follow, name="thunder-progress", daemon=True)
        self.drawn = False

    def __enter__(self) -> "RunProgress":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()

    def _run_id(self) -> str | None:
        runs = self.instance.get_runs(filters=dg.RunsFilter(tags={self.tag[0]: self.tag[1]}))
        return runs[0].run_id if runs else None

    def _planned(self, run_id: str) -> list[str]:
        run = self.instance.get_run_by_id(run_id)
        snapshot_id = run.execution_plan_snapshot_id if run else None
        if not snapshot_id:
            return []
        return list(self.instance.get_execution_plan_snapshot(snapshot_id).step_keys_to_execute)

    def _follow(self) -> None:
        run_id, count, cursor = None, None, None
        running, message, shown = "", "", None
        while True:
            stopping = self.stop.wait(self.every)
            try:
                if run_id is None:
                    run_id = self._run_id()
                    if run_id is None:
                        if stopping:
                            return
                        continue
                    count = StepCount(self._planned(run_id))
                records = self.instance.get_records_for_run(run_id=run_id, cursor=cursor)
            except Exception:
                # The bar is a convenience: a failed read never disturbs the run.
                if stopping:
                    return
                continue
            cursor = records.cursor
            for record in records.records:
                entry = record.event_log_entry
                key = entry.step_key
                event = entry.dagster_event
                if key is None:
                    continue
                if event is not None and event.event_type in STEP_ENDS:
                    count.finished(key)
                    if key == running:
                        running, message = "", ""
                elif event is not None and event.event_type == dg.DagsterEventType.STEP_START:
                    count.started(key)
                    running, message = key, ""
                elif event is None and entry.user_message:
                    running, message = key, entry.user_message.splitlines()[0]
            line = render(count, running, message, shutil.get_terminal_size((100, 20)).columns)
            if line != shown:  # redraw only what changed
                self.stream.write("\r\x1b[2K" + line)
                self.stream.flush()
                shown, self.drawn = line, True
            if stopping:
                return


def progress_tag() -> tuple[str, str]:
    """A tag that finds the run this invocation starts (its id is not known before)."""
    return "thunder/cli_invocation", uuid.uuid4().hex
