// Small enhancements; every page works without them.
document.addEventListener("DOMContentLoaded", () => {
  // A submit that takes a moment: the button says so and cannot be pressed twice (the server
  // would make one application anyway: the draft's id is the idempotency key).
  document.querySelectorAll("form.submit-once").forEach((form) => {
    form.addEventListener("submit", () => {
      form.querySelectorAll("button[type=submit]").forEach((b) => { b.disabled = true; });
    });
  });
});
