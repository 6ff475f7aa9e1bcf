// Targets: each target's limits, in-flight count and circuit (CLOSED / OPEN / HALF_OPEN), with
// "Resume"; a form to set or remove a target's limits; any origin's circuit; and a bulk replay
// whose job's progress shows until it ends. The table refreshes while open.

import { api } from "./api.js";
import { badge, confirmAction, el, every, facts, replace, table, time } from "./dom.js";

const REFRESH_SECONDS = 5;
const JOB_REFRESH_SECONDS = 1;
const COLUMNS = ["Origin", "Rate per second", "Concurrency", "In flight", "Tokens", "Circuit", "Failures", "Next probe", "Actions"];
const DEFAULT_ORIGIN = "*";
const NO_LIMIT = "no limit";

function field(id, label, input) {
  input.id = id;
  return el("div", { class: "field" }, el("label", { for: id }, label), input);
}

// Whether the target has limits of its own (a target listed only for its open circuit has none).
function hasLimits(target) {
  return [target.ratePerSecond, target.maxConcurrency].some((value) => value !== null && value !== undefined);
}

function limit(value) {
  return value === null || value === undefined ? NO_LIMIT : String(value);
}

// A number input's value: null when empty (no limit of that kind).
function numberOrNull(input) {
  return input.value.trim() === "" ? null : Number(input.value);
}

export function openTargets(main, route, context) {
  const list = el("div", { class: "listing" });
  const refreshed = el("p", { class: "hint" });
  const limits = limitsForm(context, () => refresh());
  const circuit = circuitForm(context, () => refresh());
  const bulkReplay = bulkReplayForm(context);
  let shown = null;

  async function resume(origin) {
    if (!(await confirmAction(`Resume ${origin}? Its circuit closes and its paused messages are delivered again.`, "Yes, resume it"))) return;
    try {
      const answer = await api.resume(origin);
      context.notify(`${origin} is ${answer.state}: ${answer.resumed} paused messages re-driven.`);
      await load();
    } catch (error) {
      context.fail(error);
    }
  }

  async function removeLimits(target) {
    if (!(await confirmAction(`Remove the limits of ${target.origin}? Its messages are then sent without limits.`, "Yes, remove them"))) return;
    try {
      await api.deleteTarget(target.id);
      context.notify(`${target.origin} has no limits of its own now.`);
      await load();
    } catch (error) {
      context.fail(error);
    }
  }

  function row(target) {
    const health = target.health || {};
    const open = health.state && health.state !== "CLOSED";
    return [
      target.origin === DEFAULT_ORIGIN ? "* (every target without limits of its own)" : target.origin,
      limit(target.ratePerSecond),
      limit(target.maxConcurrency),
      String(target.inFlight ?? 0),
      target.tokens === null || target.tokens === undefined ? "" : String(target.tokens),
      health.state ? badge(health.state) : "",
      health.consecutiveFailures === undefined ? "" : String(health.consecutiveFailures),
      health.nextProbeAt ? time(health.nextProbeAt) : "",
      el("div", { class: "row-actions" },
        el("button", { type: "button", onclick: () => limits.edit(target) }, "Edit limits"),
        open ? el("button", { type: "button", onclick: () => resume(target.origin) }, "Resume") : null,
        hasLimits(target)
          ? el("button", { type: "button", class: "danger", onclick: () => removeLimits(target) }, "Remove limits")
          : null),
    ];
  }

  async function load() {
    const answer = await api.targets();
    const json = JSON.stringify(answer.items);
    if (json !== shown) {
      shown = json;
      replace(list, table("Targets with limits or an open circuit", COLUMNS, answer.items.map(row), "No target has limits or an open circuit."));
    }
    refreshed.textContent = `Updated ${new Date().toLocaleTimeString()}; refreshes every ${REFRESH_SECONDS} s.`;
  }
  const refresh = () => load().catch((error) => context.fail(error));

  replace(main,
    el("h1", { tabindex: "-1" }, "Targets"),
    refreshed,
    list,
    el("div", { class: "panels" },
      el("section", {}, el("h2", {}, "Set a target's limits"), limits.form),
      el("section", {}, el("h2", {}, "A target's circuit"), circuit),
      el("section", {}, el("h2", {}, "Bulk replay"), bulkReplay.form)));
  refresh();
  const stopTable = every(REFRESH_SECONDS, refresh);
  return () => {
    stopTable();
    bulkReplay.stop();
  };
}

function limitsForm(context, changed) {
  const origin = el("input", { name: "origin", type: "text", required: true, autocomplete: "off", placeholder: "https://hooks.example.com" });
  const rate = el("input", { name: "ratePerSecond", type: "number", min: "0.001", step: "any", inputmode: "decimal" });
  const concurrency = el("input", { name: "maxConcurrency", type: "number", min: "1", step: "1", inputmode: "numeric" });
  const form = el("form", { class: "stacked", novalidate: true },
    field("limits-origin", "Origin", origin),
    field("limits-rate", "Rate per second (empty: no limit)", rate),
    field("limits-concurrency", "Max concurrency (empty: no limit)", concurrency),
    el("button", { type: "submit" }, "Save limits"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const saved = await api.putTarget({ origin: origin.value.trim(), ratePerSecond: numberOrNull(rate), maxConcurrency: numberOrNull(concurrency) });
      context.notify(`Limits of ${saved.origin} saved.`);
      changed();
    } catch (error) {
      context.fail(error);
    }
  });
  const edit = (target) => {
    origin.value = target.origin;
    rate.value = target.ratePerSecond ?? "";
    concurrency.value = target.maxConcurrency ?? "";
    rate.focus();
  };
  return { form, edit };
}

function circuitForm(context, changed) {
  const origin = el("input", { name: "origin", type: "text", required: true, autocomplete: "off", placeholder: "https://hooks.example.com" });
  const result = el("div", { class: "circuit", "aria-live": "polite" });
  const form = el("form", { class: "stacked", novalidate: true },
    field("circuit-origin", "Origin", origin),
    el("button", { type: "submit" }, "Show circuit"),
    result);

  async function show() {
    const health = await api.health(origin.value.trim());
    const open = health.state !== "CLOSED";
    const resume = el("button", { type: "button", id: "circuit-resume" }, "Resume");
    resume.addEventListener("click", async () => {
      try {
        const answer = await api.resume(health.origin);
        context.notify(`${health.origin} is ${answer.state}: ${answer.resumed} paused messages re-driven.`);
        await show();
        changed();
      } catch (error) {
        context.fail(error);
      }
    });
    replace(result,
      facts([
        ["Origin", health.origin],
        ["Circuit", badge(health.state)],
        ["Consecutive failures", String(health.consecutiveFailures ?? 0)],
        ["Opened", health.openedAt && time(health.openedAt)],
        ["Next probe", health.nextProbeAt && time(health.nextProbeAt)],
        ["Failed probes", health.failedProbes === undefined ? "" : String(health.failedProbes)],
      ]),
      open ? resume : null);
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    show().catch((error) => context.fail(error));
  });
  return form;
}

// A datetime-local input's value as RFC 3339 in UTC (the browser's zone is the input's).
function instant(input) {
  return input.value ? new Date(input.value).toISOString() : undefined;
}

function bulkReplayForm(context) {
  const status = el("select", { name: "status" }, context.capabilities.bulkReplayStatuses.map((name) => el("option", { value: name }, name)));
  const since = el("input", { name: "since", type: "datetime-local", step: "1" });
  const until = el("input", { name: "until", type: "datetime-local", step: "1" });
  const origin = el("input", { name: "origin", type: "text", autocomplete: "off", placeholder: "https://hooks.example.com (optional)" });
  const progress = el("div", { class: "job", "aria-live": "polite" });
  const form = el("form", { class: "stacked", novalidate: true },
    el("p", { class: "hint" }, "Replays every message that reached the status in the window (default: the last 24 hours), optionally only those to one origin."),
    field("replay-status", "Messages in status", status),
    field("replay-since", "Since (your time zone)", since),
    field("replay-until", "Until (your time zone)", until),
    field("replay-origin", "Origin", origin),
    el("button", { type: "submit" }, "Start replay"),
    progress);
  let stopJob = () => {};

  function showJob(job) {
    const done = (job.replayed || 0) + (job.skipped || 0) + (job.failed || 0);
    replace(progress,
      el("progress", { max: String(Math.max(job.matched || 0, 1)), value: String(job.state === "RUNNING" ? done : Math.max(job.matched || 0, 1)) }),
      facts([
        ["Job", job.jobId],
        ["State", badge(job.state)],
        ["Matched", String(job.matched ?? 0)],
        ["Replayed", String(job.replayed ?? 0)],
        ["Skipped", String(job.skipped ?? 0)],
        ["Failed", String(job.failed ?? 0)],
        ["Reason", job.reason],
      ]));
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const filter = { status: status.value, since: instant(since), until: instant(until), origin: origin.value.trim() || undefined };
    try {
      const started = await api.replayMany(filter);
      showJob(started);
      stopJob();
      stopJob = every(JOB_REFRESH_SECONDS, async () => {
        try {
          const job = await api.replayJob(started.jobId);
          showJob(job);
          if (job.state !== "RUNNING") stopJob();
        } catch (error) {
          stopJob();
          context.fail(error);
        }
      });
    } catch (error) {
      context.fail(error);
    }
  });
  return { form, stop: () => stopJob() };
}
