// The console works without this file; with it, a form's button is disabled once the form is
// sent, so a second click does not post it twice.
"use strict";
document.addEventListener("submit", (e) => {
  if (e.submitter && e.target.method === "post") {
    setTimeout(() => { e.submitter.disabled = true; }, 0);
  }
});
