// The console works without this file; with it, a recall asks once more before it goes.
"use strict";
document.addEventListener("submit", (e) => {
  const button = e.submitter;
  const question = button && button.dataset.confirm;
  if (question && !window.confirm(question)) {
    e.preventDefault();
  }
});
