// hpcgate's web interface: the live parts htmx does not do. Live output and state changes,
// a function's invocation as it runs (EventSource), uploads by drag and drop with progress
// (XMLHttpRequest). Text from the server is only ever set as textContent, never parsed as HTML.
"use strict";

function csrfToken() {
  return document.body.dataset.csrf || "";
}

function followOutput(pre) {
  const source = new EventSource(pre.dataset.outputSrc);
  source.addEventListener("output", (event) => {
    pre.textContent += JSON.parse(event.data).text;
    pre.dataset.offset = JSON.parse(event.data).offset;
  });
  source.addEventListener("end", (event) => {
    source.close();
    pre.dataset.ended = "true";
    const state = document.getElementById("job-state");
    if (state) state.textContent = JSON.parse(event.data).state;
  });
}

function followEvents(list) {
  const source = new EventSource(list.dataset.eventsSrc);
  source.addEventListener("state", (event) => {
    const change = JSON.parse(event.data);
    const item = document.createElement("li");
    item.textContent = change.time + " " + change.state + (change.reason ? " (" + change.reason + ")" : "");
    list.appendChild(item);
    const state = document.getElementById("job-state");
    if (state) state.textContent = change.state;
  });
  source.addEventListener("end", () => source.close());
}

function shown(data) {
  return typeof data === "string" ? data : JSON.stringify(data);
}

function followInvocation(pre) {
  const source = new EventSource(pre.dataset.invocationSrc);
  const state = document.getElementById("call-state");
  source.addEventListener("output", (event) => {
    pre.textContent += shown(JSON.parse(event.data)) + "\n";
    if (state) state.textContent = "running";
  });
  source.addEventListener("result", (event) => {
    source.close();
    document.getElementById("call-result").textContent = JSON.stringify(JSON.parse(event.data), null, 2);
    if (state) state.textContent = "succeeded";
    pre.dataset.ended = "true";
  });
  source.addEventListener("error", (event) => {
    if (!event.data) return;  // the connection's own error: EventSource reconnects
    source.close();
    const error = JSON.parse(event.data) || {};
    const box = document.getElementById("call-error");
    box.textContent = (error.type || "Error") + ": " + (error.message || "");
    if (error.traceback) {
      const trace = document.createElement("pre");
      trace.textContent = error.traceback;
      box.appendChild(trace);
    }
    if (state) state.textContent = error.type === "Cancelled" ? "cancelled" : "failed";
    pre.dataset.ended = "true";
  });
}

function joinPath(dir, name) {
  return dir.endsWith("/") ? dir + name : dir + "/" + name;
}

// Files above RESUMABLE_FROM go as a resumable upload, in pieces of PIECE bytes: after a
// broken piece (or a reload, then the same file dropped again) the gateway says where it
// stands and the upload goes on from there.
const RESUMABLE_FROM = 8 << 20;
const PIECE = 4 << 20;
const RETRIES = 5;

function sendTo(method, url, body, type) {
  const headers = {"X-CSRF-Token": csrfToken()};
  if (type) headers["Content-Type"] = type;
  return fetch(url, {method, headers, body, credentials: "same-origin"});
}

async function standing(url) {
  try {
    const answer = await fetch(url, {credentials: "same-origin"});
    return answer.ok ? await answer.json() : null;
  } catch (broken) {
    return null;
  }
}

async function begun(zone, file, path, overwrite) {
  const key = ["hpcgate-upload", zone.dataset.system, path, file.size, file.lastModified].join(" ");
  const known = localStorage.getItem(key);
  const found = known ? await standing(zone.dataset.uploadsUrl + "/" + known + zone.dataset.query) : null;
  if (found && !found.complete && found.size === file.size) return {key, state: found};
  const body = JSON.stringify({path, size: file.size, overwrite});
  const answer = await sendTo("POST", zone.dataset.uploadsUrl + zone.dataset.query, body, "application/json");
  if (answer.status !== 201) return {key, status: answer.status};
  const state = await answer.json();
  localStorage.setItem(key, state.id);
  return {key, state};
}

async function sendPiece(url, piece) {
  try {
    return await sendTo("PUT", url, piece, "application/octet-stream");
  } catch (broken) {
    return null; // the connection broke: ask where it stands
  }
}

async function resumable(zone, file, path, overwrite, bar) {
  const started = await begun(zone, file, path, overwrite);
  if (!started.state) return started.status;
  let state = started.state;
  const at = zone.dataset.uploadsUrl + "/" + state.id + zone.dataset.query;
  let failures = 0;
  while (!state.complete) {
    bar.value = state.offset;
    const piece = file.slice(state.offset, Math.min(file.size, state.offset + PIECE));
    const answer = await sendPiece(at + "&offset=" + state.offset, piece);
    if (answer && answer.ok) {
      state = await answer.json();
      failures = 0;
      continue;
    }
    if (answer && answer.status !== 409 && answer.status < 500) return answer.status;
    if (++failures > RETRIES) return answer ? answer.status : 0;
    await new Promise((wake) => setTimeout(wake, 500 * failures));
    state = (await standing(at)) || state;
  }
  localStorage.removeItem(started.key);
  return 201;
}

function wholeUpload(zone, file, path, overwrite, bar) {
  return new Promise((resolve) => {
    const request = new XMLHttpRequest();
    const replace = overwrite ? "&overwrite=true" : "";
    request.open("PUT", zone.dataset.uploadUrl + "&path=" + encodeURIComponent(path) + replace);
    request.setRequestHeader("X-CSRF-Token", csrfToken());
    request.setRequestHeader("Content-Type", "application/octet-stream");
    request.upload.addEventListener("progress", (event) => { bar.value = event.loaded; });
    request.addEventListener("loadend", () => resolve(request.status));
    request.send(file);
  });
}

async function uploadOne(zone, file, list) {
  const item = document.createElement("li");
  const label = document.createElement("span");
  label.textContent = file.name + " ";
  const bar = document.createElement("progress");
  bar.max = file.size || 1;
  bar.value = 0;
  bar.setAttribute("aria-label", "Uploading " + file.name);
  item.append(label, bar);
  list.appendChild(item);
  const path = joinPath(zone.dataset.dir, file.name);
  const box = document.getElementById("upload-overwrite");
  const overwrite = Boolean(box && box.checked);
  const send = file.size > RESUMABLE_FROM ? resumable : wholeUpload;
  const status = await send(zone, file, path, overwrite, bar);
  const ok = status === 201;
  bar.value = bar.max;
  item.dataset.status = ok ? "done" : "failed";
  label.textContent = file.name + (ok ? ": uploaded " : ": failed (" + status + ") ");
  return ok;
}

async function uploadAll(zone, files) {
  const list = document.getElementById("uploads");
  const results = [];
  for (const file of files) results.push(await uploadOne(zone, file, list));
  if (results.every(Boolean)) window.location.reload();
}

function dropZone(zone) {
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    uploadAll(zone, Array.from(event.dataTransfer.files));
  });
  const input = document.getElementById("upload-input");
  if (input) input.addEventListener("change", () => uploadAll(zone, Array.from(input.files)));
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-output-src]").forEach(followOutput);
  document.querySelectorAll("[data-events-src]").forEach(followEvents);
  document.querySelectorAll("[data-upload-url]").forEach(dropZone);
  document.querySelectorAll("[data-invocation-src]").forEach(followInvocation);
});
