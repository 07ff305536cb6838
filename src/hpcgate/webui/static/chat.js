// hpcgate's chat page: the conversation sent to /ui/v1/..., the answer's tokens added to
// the page as they stream in (Server-Sent Events read from fetch's body). Text from the
// model is only ever set as textContent.
"use strict";

function csrf() {
  return document.body.dataset.csrf || "";
}

function line(list, who, text) {
  const item = document.createElement("li");
  const label = document.createElement("strong");
  label.textContent = who + ": ";
  const words = document.createElement("span");
  words.textContent = text;
  item.append(label, words);
  list.appendChild(item);
  return words;
}

function piece(chunk) {
  const choice = (chunk.choices || [])[0] || {};
  if (choice.delta && typeof choice.delta.content === "string") return choice.delta.content;
  return typeof choice.text === "string" ? choice.text : "";
}

async function readStream(response, onPiece) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    pending += decoder.decode(value, { stream: true });
    const frames = pending.split("\n\n");
    pending = frames.pop();
    for (const frame of frames) {
      for (const row of frame.split("\n")) {
        if (!row.startsWith("data:")) continue;
        const data = row.slice(5).trim();
        if (data && data !== "[DONE]") onPiece(piece(JSON.parse(data)));
      }
    }
  }
}

function chat(form) {
  const list = document.getElementById("transcript");
  const error = document.getElementById("chat-error");
  const messages = [];
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = form.elements.message.value;
    const mode = form.elements.mode.value;
    const button = form.querySelector("button");
    error.textContent = "";
    line(list, "You", text);
    messages.push({ role: "user", content: text });
    const body = { model: form.elements.model.value, stream: true };
    if (mode === "completions") body.prompt = text;
    else body.messages = messages;
    const answer = line(list, form.elements.model.value, "");
    button.disabled = true;
    try {
      const response = await fetch("/ui/v1/" + mode, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
        body: JSON.stringify(body),
      });
      if (!response.ok) {
        const problem = await response.json().catch(() => ({}));
        const detail = (problem.error && problem.error.message) || problem.detail || response.statusText;
        throw new Error(response.status + " " + detail);
      }
      await readStream(response, (more) => { answer.textContent += more; });
      messages.push({ role: "assistant", content: answer.textContent });
      answer.parentElement.dataset.done = "true";
      form.elements.message.value = "";
    } catch (failure) {
      error.textContent = String(failure.message || failure);
    } finally {
      button.disabled = false;
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("form[data-chat]").forEach(chat);
});
