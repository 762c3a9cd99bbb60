// The /viewer/sign-in page: trades an API key (typed in, or from a #key=... link) once for the viewer's
// HttpOnly session cookie, then opens the viewer. This page loads no third-party script, so nothing else
// on it sees the key, and the key is kept nowhere afterwards.
"use strict";
(() => {
  const config = document.body.dataset;
  const say = (text, error) => {
    const el = document.getElementById("message");
    el.textContent = text;
    el.className = error ? "error" : "";
  };

  async function signIn(key) {
    const response = await fetch(config.sessionPath, {headers: {Authorization: "Bearer " + key}, cache: "no-store"});
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(typeof body.detail === "string" ? body.detail : "HTTP " + response.status);
    }
    location.replace(config.viewerPath + location.search);
  }

  const form = document.getElementById("key-form");
  const input = document.getElementById("key");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = input.value.trim();
    input.value = "";
    signIn(key).catch((error) => say(error.message, true));
  });
  if (location.hash.startsWith("#key=")) {
    const key = decodeURIComponent(location.hash.slice(5));
    history.replaceState(null, "", location.pathname + location.search);  // drop the key from the address bar
    signIn(key).catch((error) => say(error.message, true));
  }
})();
