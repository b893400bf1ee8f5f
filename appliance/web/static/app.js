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
