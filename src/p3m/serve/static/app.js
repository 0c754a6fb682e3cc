// The p3m page: two modes over the JSON API (POST /api/matte, POST /api/anonymize).
"use strict";

const $ = (id) => document.getElementById(id);
const statusLine = $("status");

function say(text, isError) {
  statusLine.textContent = text;
  statusLine.className = isError ? "error" : "";
}

function stem(file) {
  const name = (file && file.name) || "image";
  const dot = name.lastIndexOf(".");
  return (dot > 0 ? name.slice(0, dot) : name).replace(/[^\w.-]+/g, "_") || "image";
}

// Every result on screen goes away before a new request, so a failed request never leaves
// the previous image's results looking like the answer to this one.
function clearResults() {
  for (const section of ["matte-results", "anonymize-results"]) $(section).hidden = true;
  for (const id of ["photo", "alpha", "rgba", "composite", "anon-photo", "anon-image", "anon-facemask"]) {
    const img = $(id);
    if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
    img.removeAttribute("src");
  }
  for (const id of ["alpha-dl", "rgba-dl", "composite-dl", "anon-image-dl", "anon-facemask-dl"]) {
    const link = $(id);
    link.removeAttribute("href");
    link.hidden = true;
  }
  $("faces").querySelector("tbody").replaceChildren();
  $("anon-warnings").replaceChildren();
}

function showImage(id, dataUrl, fileName) {
  $(id).src = dataUrl;
  const link = $(id + "-dl");
  if (link) {
    link.href = dataUrl;
    link.download = fileName;
    link.hidden = false;
  }
}

async function post(url, body) {
  const response = await fetch(url, { method: "POST", body });
  let result = null;
  try {
    result = await response.json();
  } catch (error) {
    throw new Error(response.status + " " + response.statusText);
  }
  if (!response.ok) {
    let message = (result && result.detail) || response.statusText;
    if (typeof message !== "string") message = JSON.stringify(message);
    const retry = response.headers.get("Retry-After");
    if (retry) message += " (retry in " + retry + " s)";
    throw new Error(message);
  }
  return result;
}

// The service's upload limit, so that a file too large is refused here, before it is sent.
let uploadLimit = null;
fetch("/api/health").then((r) => r.json()).then((health) => { uploadLimit = health.max_upload_bytes; })
  .catch(() => {});

function checkSize(files) {
  const total = files.filter(Boolean).reduce((sum, file) => sum + file.size, 0);
  if (uploadLimit && total > uploadLimit) {
    const mib = (bytes) => (bytes / 1048576).toFixed(1) + " MiB";
    throw new Error("the upload (" + mib(total) + ") is larger than the service accepts (" + mib(uploadLimit) + ")");
  }
}

async function run(button, work) {
  button.disabled = true;
  clearResults();
  try {
    await work();
  } catch (error) {
    clearResults();
    say("Error: " + error.message, true);
  } finally {
    button.disabled = false;
  }
}

// ----------------------------------------------------------------------------- modes

function setMode(mode) {
  for (const name of ["matte", "anonymize"]) {
    const active = name === mode;
    $("mode-" + name).setAttribute("aria-selected", String(active));
    $(name + "-form").hidden = !active;
  }
  clearResults();
  say("");
}
$("mode-matte").addEventListener("click", () => setMode("matte"));
$("mode-anonymize").addEventListener("click", () => setMode("anonymize"));
$("bg-image").addEventListener("change", () => { $("bg-kind-image").checked = true; });
$("bg").addEventListener("input", () => { $("bg-kind-color").checked = true; });

// ----------------------------------------------------------------------------- matte

$("matte-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const file = $("file").files[0];
  if (!file) return;
  run($("go"), async () => {
    say("Matting…");
    const body = new FormData();
    body.append("image", file);
    body.append("output", "json");
    body.append("background", $("bg").value);
    const backgroundFile = $("bg-kind-image").checked ? $("bg-image").files[0] : null;
    checkSize([file, backgroundFile]);
    if (backgroundFile) body.append("background_image", backgroundFile);
    const result = await post("/api/matte", body);
    const name = stem(file);
    $("photo").src = URL.createObjectURL(file);
    showImage("alpha", result.alpha, name + "_alpha.png");
    showImage("rgba", result.rgba, name + "_rgba.png");
    showImage("composite", result.composite, name + "_composite.png");
    $("matte-results").hidden = false;
    let text = "Done with model " + result.model + " (" + result.width + " x " + result.height + ").";
    if (result.resized) text += " " + result.resized + ".";
    for (const note of result.notes || []) text += " " + note;
    say(text);
  });
});

// ----------------------------------------------------------------------------- anonymise

function faceDetails(face) {
  const shown = new Set(["box", "score", "detectors"]);
  return Object.entries(face)
    .filter(([key, value]) => !shown.has(key) && value !== null && value !== undefined)
    .map(([key, value]) => key + ": " + (typeof value === "object" ? JSON.stringify(value) : value))
    .join("; ");
}

$("anonymize-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const file = $("anon-file").files[0];
  if (!file) return;
  run($("anon-go"), async () => {
    say("Anonymising…");
    const body = new FormData();
    body.append("image", file);
    const matte = $("anon-alpha").files[0];
    checkSize([file, matte]);
    if (matte) body.append("alpha", matte);
    body.append("method", $("anon-method").value);
    body.append("strength", $("anon-strength").value);
    body.append("detectors", $("anon-detectors").value);
    body.append("audit", $("anon-audit").checked ? "true" : "false");
    body.append("output", "json");
    const result = await post("/api/anonymize", body);
    const name = stem(file);
    $("anon-photo").src = URL.createObjectURL(file);
    showImage("anon-image", result.image, name + "_anonymized.png");
    showImage("anon-facemask", result.facemask, name + "_facemask.png");
    const rows = $("faces").querySelector("tbody");
    (result.faces || []).forEach((face, index) => {
      const row = document.createElement("tr");
      const cells = [
        String(index + 1),
        (face.box || []).join(", "),
        face.score === undefined ? "" : String(face.score),
        (face.detectors || []).join(", "),
        faceDetails(face),
      ];
      for (const value of cells) {
        const cell = document.createElement("td");
        cell.textContent = value;
        row.appendChild(cell);
      }
      rows.appendChild(row);
    });
    for (const warning of result.warnings || []) {
      const item = document.createElement("li");
      item.textContent = warning;
      $("anon-warnings").appendChild(item);
    }
    $("anonymize-results").hidden = false;
    const faces = (result.faces || []).length;
    const done = "Done: " + faces + " face(s), " + result.method + ", matte: " + result.alpha_source + ".";
    if (result.faces_left_visible) {
      // A leak is the one thing this mode must not hide: said first, in the error style.
      say("Audit failed: " + result.faces_left_visible + " face(s) left visible; do not share this image. " + done, true);
    } else if (result.audit_passed === false) {
      say("Audit failed: an identity still matches; do not share this image. " + done, true);
    } else if (result.status && result.status !== "done") {
      say(done + " Status: " + result.status.replace("_", " ") + " (" + (result.review_reasons || []).join("; ") + ").");
    } else {
      say(done + (result.to_check ? " To check: " + result.to_check + "." : ""));
    }
  });
});
