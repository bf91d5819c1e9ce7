// The console's only script: copy buttons. Every page works without it (the value to copy is
// shown in a read-only field next to the button, which selects on focus).
"use strict";

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) {
    return;
  }
  event.preventDefault();
  const source = document.getElementById(button.dataset.copy);
  if (!source) {
    return;
  }
  const text = "value" in source ? source.value : source.textContent;
  const done = () => {
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  };
  if (navigator.clipboard) {
    navigator.clipboard.writeText(text).then(done, () => source.select && source.select());
  } else if (source.select) {
    source.select();
    document.execCommand("copy");
    done();
  }
});

// Copy buttons need the script: they are hidden until it runs.
document.querySelectorAll("button[data-copy]").forEach((button) => { button.hidden = false; });
document.querySelectorAll("input.copyable").forEach((input) => {
  input.addEventListener("focus", () => input.select());
});
