// The chat page's script. Every call goes to this origin with the token in an Authorization header;
// everything the model or the API says is put on the page as text (textContent), never as HTML.
"use strict";
const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "personalai-token";
const TRAINING_POLL_MS = 10000;
let sessionId = null;
let pollTimer = null;

function api(path, options = {}) {
  const headers = { "Authorization": "Bearer " + sessionStorage.getItem(TOKEN_KEY) };
  if (options.body) headers["Content-Type"] = "application/json";
  return fetch(path, { ...options, headers, body: options.body && JSON.stringify(options.body) });
}

async function errorText(response) {
  try { return (await response.json()).error.message; } catch (e) { return "HTTP " + response.status; }
}

function show(state) {
  document.body.dataset.state = state;
  $("chat").hidden = state !== "chat" && state !== "sending" && state !== "complete";
  $("training").hidden = state !== "training";
  $("new-session").disabled = $("chat").hidden;
}

const SPEAKERS = { user: "You: ", assistant: "AI: ", error: "" };

function addLine(role, text) {
  const line = Object.assign(document.createElement("div"), { className: "msg " + role, textContent: SPEAKERS[role] + text });
  return $("log").appendChild(line);
}

// Thumbs up/down (and an optional note) under a stored reply; the pressed one is its rating.
// Pressing it again removes the rating.
function addRating(line, messageId, rating) {
  const path = "/api/ai-echo/sessions/" + encodeURIComponent(sessionId) + "/messages/" + messageId + "/rating";
  const bar = Object.assign(document.createElement("div"), { className: "rating" });
  const note = Object.assign(document.createElement("input"), {
    className: "rating-note", type: "text", maxLength: 500, placeholder: "note (optional)" });
  const buttons = ["up", "down"].map((value) => {
    const button = Object.assign(document.createElement("button"), {
      type: "button", className: "rate-" + value, textContent: value === "up" ? "▲ Good" : "▼ Bad",
      title: value === "up" ? "A good reply" : "A bad reply" });
    button.dataset.rating = value;
    button.addEventListener("click", async () => {
      const undo = button.getAttribute("aria-pressed") === "true";
      const response = undo ? await api(path, { method: "DELETE" })
        : await api(path, { method: "POST", body: { rating: value, ...(note.value.trim() ? { note: note.value.trim() } : {}) } });
      if (!response.ok) { addLine("error", await errorText(response)); return; }
      show(undo ? null : value);
    });
    return button;
  });
  function show(current) {
    for (const button of buttons) button.setAttribute("aria-pressed", String(button.dataset.rating === current));
    bar.dataset.rated = current || "";
  }
  show(rating);
  bar.append(...buttons, note);
  line.after(bar);
}

async function openAI() {
  const response = await api("/api/me");
  if (!response.ok) { $("status").textContent = await errorText(response); show("signed-out"); return; }
  const me = await response.json();
  $("whose").textContent = (me.displayName || me.userId) + "'s PersonalAI";
  document.title = $("whose").textContent;
  $("mode").replaceChildren(...me.personalityModes.map((mode) => {
    const option = new Option(mode.name, mode.name, false, mode.name === me.defaultMode);
    if (mode.description) option.title = mode.description;
    return option;
  }));
  $("status").textContent = "";
  await refresh();
}

// The chat server's sessions, or, while there is none yet, where training stands (checked again shortly).
async function refresh() {
  clearTimeout(pollTimer);
  const response = await api("/api/ai-echo/sessions");
  if (response.ok) { listSessions((await response.json()).sessions); if (!sessionId) show("chat"); return; }
  if (response.status !== 503) { $("status").textContent = await errorText(response); return; }
  const [status, readiness] = await Promise.all([api("/api/training/status"), api("/api/training/start-personal-ai")]);
  const run = status.ok ? await status.json() : null;
  const data = readiness.ok ? await readiness.json() : null;
  $("training-state").textContent = "No chat server yet. " + (!run ? "" : run.trainingRun
    ? "Training run " + run.trainingRun + ": " + run.state + (run.progress && run.progress.percent != null
      ? " (" + Math.round(run.progress.percent) + "%)" : "") + "."
    : run.suspended ? "Training has not been started." : run.message);
  $("readiness").textContent = data ? data.message : "";
  show("training");
  pollTimer = setTimeout(refresh, TRAINING_POLL_MS);
}

function listSessions(sessions) {
  $("sessions").replaceChildren(...sessions.map((session) => {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.sessionId = session.sessionId;
    button.className = session.sessionId === sessionId ? "current" : "";
    button.textContent = session.title + " (" + session.messageCount + ")";
    button.addEventListener("click", () => reopen(session.sessionId));
    item.appendChild(button);
    return item;
  }));
}

async function reopen(id) {
  const response = await api("/api/ai-echo/sessions/" + encodeURIComponent(id));
  if (!response.ok) { $("status").textContent = await errorText(response); return; }
  const session = await response.json();
  sessionId = session.sessionId;
  $("log").textContent = "";
  for (const message of session.messages) {
    const line = addLine(message.role, message.content);
    if (message.role === "assistant" && message.messageId != null) addRating(line, message.messageId, message.rating);
  }
  if (session.settings.personalityMode) $("mode").value = session.settings.personalityMode;
  $("session-info").textContent = "Conversation " + sessionId;
  show("chat");
  await refresh();
}

async function newSession(title) {
  const response = await api("/api/ai-echo/sessions", {
    method: "POST", body: { title, settings: { personalityMode: $("mode").value } } });
  if (!response.ok) { addLine("error", await errorText(response)); return null; }
  sessionId = (await response.json()).sessionId;
  $("session-info").textContent = "Conversation " + sessionId;
  return sessionId;
}

// Server-Sent Events from a fetch response, as they arrive: each block's "data: " lines are one JSON event.
async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
    buffer += decoder.decode(chunk.value, { stream: true });
    const blocks = buffer.split("\n\n");
    buffer = blocks.pop();
    for (const block of blocks) {
      const data = block.split("\n").filter((line) => line.startsWith("data: ")).map((line) => line.slice(6));
      if (data.length && data[0] !== "[DONE]") yield JSON.parse(data.join("\n"));
    }
  }
}

// One turn on POST /api/ai-echo/stream, the reply shown as it is generated.
async function send(text) {
  if (!sessionId && !(await newSession(text.slice(0, 60)))) return;
  addLine("user", text);
  const reply = addLine("assistant", "");
  $("status").textContent = "…";
  const response = await api("/api/ai-echo/stream", { method: "POST", body: { message: text, sessionId } });
  if (!response.ok) { reply.remove(); addLine("error", await errorText(response)); $("status").textContent = ""; return; }
  let answer = "";
  for await (const event of sseEvents(response)) {
    if (event.type === "chunk") { answer += event.content; reply.textContent = "AI: " + answer; }
    else if (event.type === "complete") {
      const m = event.metadata;
      $("status").textContent = "mode " + m.personalityMode + ", adapter " + (m.adapterVersion || "none (base model)")
        + (m.confidence != null ? ", confidence " + m.confidence.toFixed(2) : "");
      if (event.messageId != null) addRating(reply, event.messageId, null);
      show("complete");
    } else if (event.type === "error") { addLine("error", event.error.message); $("status").textContent = ""; }
  }
  await refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  $("token").value = sessionStorage.getItem(TOKEN_KEY) || "";
  $("sign-in").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    openAI().catch((error) => { $("status").textContent = String(error); });
  });
  $("new-session").addEventListener("click", () => {
    sessionId = null;
    $("log").textContent = "";
    $("session-info").textContent = "New conversation: it starts with your first message.";
    refresh();
  });
  $("mode").addEventListener("change", async () => {
    if (!sessionId) return;
    const response = await api("/api/ai-echo/sessions/" + encodeURIComponent(sessionId), {
      method: "PUT", body: { settings: { personalityMode: $("mode").value } } });
    if (!response.ok) addLine("error", await errorText(response));
  });
  $("message").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
  });
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("message").value.trim();
    if (!text) return;
    $("message").value = "";
    show("sending");
    send(text).catch((error) => addLine("error", String(error)));
  });
  if ($("token").value) openAI();
});
