// The API key dialog: opens on any 401 (or the socket's refusal), keeps the key for the browser session.

import { apiKey, setApiKey } from "./api.js";

const NEEDS_KEY = "This server needs an API key.";
const KEY_REFUSED = "The API key was refused.";

let dialog;
let input;
let alertText;
let keyButton;
let returnFocus = null;

/** Wires the dialog in index.html; the page reloads its view on `ragserver:key-changed`. */
export function initAuth() {
  dialog = document.getElementById("key-dialog");
  input = document.getElementById("key-input");
  alertText = document.getElementById("key-dialog-alert");
  keyButton = document.getElementById("key-button");
  keyButton.hidden = apiKey() === "";
  keyButton.addEventListener("click", () => openKeyDialog(""));
  document.getElementById("key-form").addEventListener("submit", saveKey);
  document.getElementById("key-forget").addEventListener("click", forgetKey);
  dialog.addEventListener("close", restoreFocus);
  document.addEventListener("ragserver:unauthorized", (event) =>
    openKeyDialog(event.detail?.hadKey ? KEY_REFUSED : NEEDS_KEY),
  );
}

/** Shows the dialog with `message` as its alert ("" for none); a second 401 while open only updates the text. */
export function openKeyDialog(message) {
  keyButton.hidden = false;
  alertText.textContent = message;
  alertText.hidden = !message;
  if (dialog.open) return;
  returnFocus = document.activeElement;
  input.value = apiKey();
  dialog.showModal();
  input.focus();
  input.select();
}

function saveKey(event) {
  event.preventDefault();
  const key = input.value.trim();
  if (!key) {
    alertText.textContent = "Enter the key, or choose Forget key.";
    alertText.hidden = false;
    input.focus();
    return;
  }
  setApiKey(key);
  closeWithChange();
}

function forgetKey() {
  setApiKey("");
  input.value = "";
  closeWithChange();
}

function closeWithChange() {
  dialog.close();
  document.dispatchEvent(new CustomEvent("ragserver:key-changed"));
}

function restoreFocus() {
  const target = returnFocus;
  returnFocus = null;
  if (target instanceof HTMLElement && target.isConnected && target !== document.body) target.focus();
}
