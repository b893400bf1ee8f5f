// The little JavaScript the pages use: a cursor over the call's timeline that follows
// the player, click-to-seek, and a confirmation before a deletion. No inline scripts
// (the Content-Security-Policy forbids them).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const player = document.getElementById("player");
  const box = document.getElementById("timeline-box");
  const cursor = document.getElementById("cursor");
  if (player && box && cursor) {
    const seconds = () => player.duration || Number(player.dataset.seconds) || 0;
    player.addEventListener("timeupdate", () => {
      const total = seconds();
      if (total > 0) {
        cursor.hidden = false;
        cursor.style.left = (100 * player.currentTime / total) + "%";
      }
    });
    box.addEventListener("click", (event) => {
      const rect = box.getBoundingClientRect();
      const total = seconds();
      if (total > 0 && rect.width > 0) {
        player.currentTime = total * (event.clientX - rect.left) / rect.width;
      }
    });
  }
  const deletion = document.getElementById("delete-form");
  if (deletion) {
    deletion.addEventListener("submit", (event) => {
      if (!window.confirm("Delete this recording? The call's record and the audit entry stay.")) {
        event.preventDefault();
      }
    });
  }
});

document.addEventListener("DOMContentLoaded", () => {
  const all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", () => {
      for (const box of document.querySelectorAll("input.pick")) {
        box.checked = all.checked;
      }
    });
  }
});

document.addEventListener("DOMContentLoaded", () => {
  const confirmations = [
    ["form.remove-user", "Remove this user? Their key slot is deleted and their sessions end."],
    ["#rotate-form", "Rotate the device key? New recordings are sealed to a new key."],
  ];
  for (const [selector, question] of confirmations) {
    for (const form of document.querySelectorAll(selector)) {
      form.addEventListener("submit", (event) => {
        if (!window.confirm(question)) {
          event.preventDefault();
        }
      });
    }
  }
});

// The status page, live: /status.json every 2 s (the same words as the server's page).
function describeStatus(s) {
  const r = s.recorder;
  const utc = (t) => new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
  let recorder;
  if (s.heartbeat_age === null) {
    recorder = ["no heartbeat yet", false];
  } else if (r.state === "stopped") {
    recorder = ["stopped", true];
  } else if (s.alive) {
    recorder = [`running, last heartbeat ${Math.round(s.heartbeat_age)} s ago`, false];
  } else {
    recorder = [`silent for ${Math.round(s.heartbeat_age)} s`, true];
  }
  const faults = Object.keys(r.faults || {}).sort().map((k) => `${k}: ${r.faults[k]}`);
  let recording = "-";
  if (r.recording !== null && r.recording !== undefined) {
    recording = r.recording ? "yes" + (r.muted ? " (muted)" : "") : "no";
  }
  const b = s.backup;
  let backup = ["no backup has run", false];
  if (b) {
    const last = b.last_success ? `last success ${utc(b.last_success)}` : "never succeeded";
    backup = [b.fault ? `${last}; fault: ${b.fault}` : last, Boolean(b.fault)];
  }
  const u = s.update;
  let update = ["no update applied", false];
  if (u) {
    update = [u.fault ? `version ${u.version}; fault: ${u.fault}` : `version ${u.version}`, Boolean(u.fault)];
  }
  return {
    "recorder": recorder,
    "st-line": [r.line || "-", false],
    "st-call": [r.call || "-", false],
    "st-recording": [recording, false],
    "st-faults": [faults.length ? faults.join("; ") : "none", faults.length > 0],
    "st-xruns": [r.xruns === null || r.xruns === undefined ? "-" : String(r.xruns), r.xruns > 0],
    "st-backup": backup,
    "st-update": update,
  };
}

document.addEventListener("DOMContentLoaded", () => {
  const live = document.getElementById("live");
  if (!live) {
    return;
  }
  const refresh = async () => {
    try {
      const answer = await fetch(live.dataset.url, { cache: "no-store" });
      if (!answer.ok) {
        return;
      }
      const status = await answer.json();
      for (const [id, [text, bad]] of Object.entries(describeStatus(status))) {
        const cell = document.getElementById(id);
        if (cell) {
          cell.textContent = text;
          cell.classList.toggle("error", bad);
        }
      }
      const clock = document.getElementById("clock-box");
      if (clock) {
        clock.hidden = !status.clock_unsynchronised;
      }
      live.dataset.updated = String(status.now);
    } catch (error) {
      // the box is restarting or the network is away: try again at the next tick
    }
  };
  window.setInterval(refresh, 2000);
  const form = document.getElementById("clock-form");
  if (form) {
    form.addEventListener("submit", () => {
      document.getElementById("clock-epoch").value = String(Date.now() / 1000);
    });
  }
});

// The ZIP export with a progress bar: the same POST, read as a stream; the server
// announces an estimate of its size (x-export-estimate) and the number of calls.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("export-form");
  const bar = document.getElementById("export-progress");
  const state = document.getElementById("export-state");
  if (!form || !bar || !state || !window.ReadableStream) {
    return;
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = document.getElementById("export");
    button.disabled = true;
    bar.hidden = false;
    bar.removeAttribute("value");
    state.textContent = "preparing…";
    try {
      const answer = await fetch(form.action, {
        method: "POST",
        body: new URLSearchParams(new FormData(form)),
      });
      if (!answer.ok) {
        state.textContent = `refused: ${answer.status} (${(await answer.text()).replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim().slice(0, 200)})`;
        return;
      }
      const estimate = Number(answer.headers.get("x-export-estimate")) || 0;
      const calls = answer.headers.get("x-export-calls") || "?";
      const reader = answer.body.getReader();
      const pieces = [];
      let received = 0;
      const mb = (n) => (n / 1e6).toFixed(1);
      for (;;) {
        const { done, value } = await reader.read();
        if (done) {
          break;
        }
        pieces.push(value);
        received += value.length;
        if (estimate > 0) {
          bar.max = Math.max(estimate, received);
          bar.value = received;
        }
        state.textContent = `${mb(received)} MB of about ${mb(estimate)} MB (${calls} calls)`;
      }
      bar.max = received;
      bar.value = received;
      state.textContent = `done: ${mb(received)} MB, ${calls} calls`;
      const name = (answer.headers.get("content-disposition") || "").match(/filename="([^"]+)"/);
      const link = document.createElement("a");
      link.href = URL.createObjectURL(new Blob(pieces, { type: "application/zip" }));
      link.download = name ? name[1] : "calls.zip";
      document.body.appendChild(link);
      link.click();
      link.remove();
      window.setTimeout(() => URL.revokeObjectURL(link.href), 60000);
    } catch (error) {
      state.textContent = "the export was interrupted";
    } finally {
      button.disabled = false;
    }
  });
});
