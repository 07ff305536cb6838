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

function uploadOne(zone, file, list) {
  const item = document.createElement("li");
  const label = document.createElement("span");
  label.textContent = file.name + " ";
  const bar = document.createElement("progress");
  bar.max = file.size || 1;
  bar.value = 0;
  bar.setAttribute("aria-label", "Uploading " + file.name);
  item.append(label, bar);
  list.appendChild(item);
  return new Promise((resolve) => {
    const request = new XMLHttpRequest();
    const path = joinPath(zone.dataset.dir, file.name);
    const overwrite = document.getElementById("upload-overwrite");
    const replace = overwrite && overwrite.checked ? "&overwrite=true" : "";
    request.open("PUT", zone.dataset.uploadUrl + "&path=" + encodeURIComponent(path) + replace);
    request.setRequestHeader("X-CSRF-Token", csrfToken());
    request.setRequestHeader("Content-Type", "application/octet-stream");
    request.upload.addEventListener("progress", (event) => { bar.value = event.loaded; });
    request.addEventListener("loadend", () => {
      const ok = request.status === 201;
      bar.value = bar.max;
      item.dataset.status = ok ? "done" : "failed";
      label.textContent = file.name + (ok ? ": uploaded " : ": failed (" + request.status + ") ");
      resolve(ok);
    });
    request.send(file);
  });
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
