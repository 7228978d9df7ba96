// Operation cards: the live state of long operations (crawls, uploads, refreshes), ProgressSnapshot of progress.py.
// One shared Socket.IO connection pushes the snapshots; while the socket library is missing, not connected within
// SOCKET_WAIT_MS, or disconnected, each operation is polled instead, with its last ETag (unchanged costs a 304);
// while it pushes, an operation it has been quiet about for CHECK_MS is asked for once.

import { api, apiKey, apiRequest, errorFrom, reportUnauthorized } from "./api.js";
import { alertBox, h, hideError, showError } from "./dom.js";

const SOCKET_LIBRARY = "/assets/vendor/socket.io.esm.min.js";
const SOCKET_WAIT_MS = 3000;
const POLL_MS = 1000;
const CHECK_MS = 10000; // while the socket pushes: one conditional GET when it has been quiet this long
const FINAL = new Set(["completed", "failed", "cancelled"]);
const ACTIVE = new Set(["starting", "running", "cancelling"]);

const operations = new Map(); // progressId -> Operation: one subscription however many cards show it
let sharedSocket = null; // the promise of the one socket (null inside when the library is missing)

/** Shows the card of an operation in `container` (one per container) and follows it live; returns the card. */
export function trackOperation(progressId, name, container) {
  forgetGone();
  let operation = operations.get(progressId);
  if (!operation) {
    operation = new Operation(progressId, name);
    operations.set(progressId, operation);
  }
  const card = operation.cardIn(container);
  operation.follow();
  return card.element;
}

/** Drops the finished operations no card on the page shows (their view was rebuilt since): the map stays small. */
function forgetGone() {
  for (const [id, operation] of operations) if (operation.finished && !operation.onPage()) operations.delete(id);
}

/** Cards for the operations running now: started here, elsewhere (CLI, MCP), or before the page reloaded. */
export async function showActiveOperations(container) {
  let error = container.querySelector(":scope > .operations-error");
  if (!error) {
    error = alertBox();
    error.classList.add("operations-error");
    container.prepend(error);
  }
  try {
    const { operations: active } = await api("/api/progress/"); // newest first
    hideError(error);
    for (const snapshot of active.toReversed()) {
      trackOperation(snapshot.progressId, snapshot.name || snapshot.message || snapshot.type, container);
      operations.get(snapshot.progressId).apply(snapshot);
    }
  } catch (err) {
    showError(error, err);
  }
}

/** "pages crawled 3 · chunks stored 20": the counters above zero, their keys in words. */
export function countsText(counts) {
  return Object.entries(counts)
    .filter(([, value]) => value > 0)
    .map(([key, value]) => `${key.replaceAll("_", " ")} ${value.toLocaleString()}`)
    .join(" · ");
}

class Operation {
  constructor(id, name) {
    this.id = id;
    this.name = name;
    this.snapshot = null;
    this.etag = null;
    this.cards = new Map(); // container -> Card
    this.subscribed = false;
    this.quietUntil = 0; // no poll before this time (ms): the socket is connecting or pushing
    this.polling = false;
    this.announced = false;
  }

  get finished() {
    return this.snapshot !== null && FINAL.has(this.snapshot.status);
  }

  /** Its card in `container`, made on first use; the cards of views rebuilt since (the sources list) are let go. */
  cardIn(container) {
    for (const shown of this.cards.keys()) if (!shown.isConnected) this.cards.delete(shown);
    let card = this.cards.get(container);
    if (!card) {
      card = new Card(this, container);
      this.cards.set(container, card);
      if (this.snapshot) card.render(this.snapshot);
    }
    return card;
  }

  /** Live updates from the socket when it is (or gets) connected in time; polling covers the rest. */
  async follow() {
    const socket = await sharedSocketOnce();
    if (this.finished) return;
    if (socket?.connected) {
      this.subscribe(socket);
    } else if (socket && !socket.active) {
      socket.connect(); // refused earlier (no or a wrong key): a key may have been saved since
    }
    this.quietUntil = socket ? Date.now() + SOCKET_WAIT_MS : 0;
    this.poll();
  }

  /** Joins the operation's room; the server answers with the current snapshot at once. */
  subscribe(socket) {
    if (this.finished) return;
    socket.emit("subscribe", { progressId: this.id }, (ack) => {
      if (ack?.success) {
        this.subscribed = true;
        this.quietUntil = Date.now() + CHECK_MS;
      } else {
        this.showError(ack?.message ?? "The server refused to report this operation");
      }
    });
  }

  socketLost() {
    this.subscribed = false;
    this.quietUntil = 0;
  }

  /**
   * Asks the server every POLL_MS while the socket does not push, and every CHECK_MS while it does (a push
   * that never comes, from a replica without Redis, is noticed); ends with the operation, when no card is
   * on the page, or on a 401 or 404.
   */
  async poll() {
    if (this.polling) return;
    this.polling = true;
    while (!this.finished && this.onPage()) {
      if (Date.now() >= this.quietUntil) {
        try {
          await this.fetchOnce();
        } catch (err) {
          this.showError(err.message);
          if (err.status === 401 || err.status === 404) break; // a saved key reloads the view, which follows again
        }
        this.quietUntil = Date.now() + (this.subscribed ? CHECK_MS : POLL_MS);
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    this.polling = false;
  }

  async fetchOnce() {
    const headers = this.etag ? { "If-None-Match": this.etag } : {};
    const response = await apiRequest(`/api/progress/${encodeURIComponent(this.id)}`, { headers });
    if (response.status === 304) return;
    const body = await response.json().catch(() => null);
    if (!response.ok) throw errorFrom(response, body);
    this.etag = response.headers.get("ETag");
    this.apply(body);
  }

  apply(snapshot) {
    // a final state stays final, and a poll's answer older than a push changes nothing
    if (this.finished || (this.snapshot && snapshot.updatedAt < this.snapshot.updatedAt)) return;
    this.snapshot = snapshot;
    if (this.subscribed) this.quietUntil = Date.now() + CHECK_MS;
    for (const card of this.cards.values()) card.render(snapshot);
    if (this.finished && !this.announced) {
      this.announced = true;
      this.unsubscribe();
      document.dispatchEvent(new CustomEvent("ragserver:operation-finished", { detail: snapshot }));
    }
  }

  async unsubscribe() {
    const socket = await sharedSocketOnce();
    if (this.subscribed && socket?.connected) socket.emit("unsubscribe", { progressId: this.id });
    this.subscribed = false;
  }

  /** Asks the server to stop the operation; false (and the reason on the cards) when the request failed. */
  async stop() {
    try {
      await api(`/api/knowledge-items/stop/${encodeURIComponent(this.id)}`, { method: "POST" });
      return true;
    } catch (err) {
      this.showError(err.message);
      return false;
    }
  }

  showError(message) {
    for (const card of this.cards.values()) showError(card.error, message);
  }

  onPage() {
    return [...this.cards.keys()].some((container) => container.isConnected);
  }

  dismiss(card) {
    this.cards.delete(card.container);
    card.element.remove();
    if (this.finished && !this.onPage()) operations.delete(this.id);
  }
}

/** One operation's card in one container. */
class Card {
  constructor(operation, container) {
    const { name } = operation;
    this.container = container;
    this.refocus = false; // Stop was pressed while focused
    this.sourceLink = null; // "Browse source", once the operation completed
    this.status = h("p", { class: "operation-status" }, "starting");
    this.fill = h("div", { class: "progress-fill" });
    this.bar = h(
      "div",
      {
        class: "progress",
        role: "progressbar",
        "aria-valuemin": 0,
        "aria-valuemax": 100,
        "aria-valuenow": 0,
        "aria-label": `Progress of ${name}`,
      },
      this.fill,
    );
    this.counts = h("p", { class: "operation-counts" });
    this.error = alertBox();
    this.stopButton = h(
      "button",
      { type: "button", "aria-label": `Stop ${name}`, on: { click: () => this.stop(operation) } },
      "Stop",
    );
    this.dismissButton = h(
      "button",
      { type: "button", "aria-label": `Dismiss ${name}`, hidden: true, on: { click: () => operation.dismiss(this) } },
      "Dismiss",
    );
    this.actions = h("div", { class: "operation-actions" }, this.stopButton, this.dismissButton);
    this.element = h(
      "article",
      { class: "operation card", "data-progress-id": operation.id },
      h("h3", { class: "operation-name" }, name),
      this.status,
      this.bar,
      this.counts,
      this.error,
      this.actions,
    );
    // newest first, below the container's heading and alert
    container.insertBefore(this.element, container.querySelector(":scope > .operation"));
  }

  async stop(operation) {
    this.refocus = document.activeElement === this.stopButton; // disabling it drops the focus: give it back later
    this.stopButton.disabled = true;
    if (!(await operation.stop())) this.stopButton.disabled = false; // the alert says why; it may be pressed again
  }

  render(snapshot) {
    const { status } = snapshot;
    this.element.dataset.status = status;
    this.status.textContent = statusText(snapshot);
    this.bar.setAttribute("aria-valuenow", String(Math.round(snapshot.progress)));
    this.fill.style.width = `${snapshot.progress}%`;
    this.counts.textContent = countsText(snapshot.counts);
    this.stopButton.hidden = !ACTIVE.has(status);
    if (status === "cancelling") this.stopButton.disabled = true;
    this.dismissButton.hidden = !FINAL.has(status);
    const focusLost = [document.body, this.stopButton].includes(document.activeElement);
    if (this.refocus && this.stopButton.hidden && focusLost) this.dismissButton.focus(); // keyboard users stay put
    if (status === "failed") showError(this.error, snapshot.error || snapshot.message);
    else hideError(this.error);
    const sourceId = snapshot.result?.source_id;
    if (status === "completed" && typeof sourceId === "string" && !this.sourceLink) {
      this.sourceLink = h("a", { href: `#/sources/${encodeURIComponent(sourceId)}` }, "Browse source");
      this.actions.prepend(this.sourceLink);
    }
  }
}

/** "running · crawling · 40 %" while active; the outcome's message once the operation ended. */
function statusText({ status, step, message, progress }) {
  if (status === "failed") return "failed";
  if (FINAL.has(status)) return message ? `${status}: ${message}` : status;
  return [status, step !== status ? step : null, `${Math.round(progress)} %`].filter(Boolean).join(" · ");
}

// -- the shared socket ----------------------------------------------------------------------------------------

function sharedSocketOnce() {
  sharedSocket ??= openSocket();
  return sharedSocket;
}

async function openSocket() {
  let io;
  try {
    ({ io } = await import(SOCKET_LIBRARY));
  } catch {
    return null; // no socket library: every operation is polled
  }
  const socket = io(location.origin, {
    path: "/socket.io",
    auth: (send) => send({ token: apiKey() }), // read at every (re)connect: the key may have changed
    transports: ["websocket", "polling"],
  });
  const everyOperation = (action) => operations.forEach(action);
  socket.on("connect", () => everyOperation((operation) => operation.subscribe(socket)));
  socket.on("disconnect", () => everyOperation((operation) => operation.socketLost()));
  socket.on("connect_error", (err) => {
    if (err.message === "unauthorized") reportUnauthorized();
    everyOperation((operation) => operation.socketLost());
  });
  socket.on("progress", (snapshot) => operations.get(snapshot?.progressId)?.apply(snapshot));
  return socket;
}
