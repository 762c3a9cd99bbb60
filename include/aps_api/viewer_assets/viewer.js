// The /viewer page: shows the model ?urn=... in the APS Viewer.
// Viewer tokens come from this server, authenticated by the HttpOnly session cookie the sign-in page set:
// this page never sees an API key, and it loads the Viewer's script only once it has a token.
"use strict";
(() => {
  const config = document.body.dataset;
  const urn = new URLSearchParams(location.search).get("urn");
  const say = (text, error) => {
    const el = document.getElementById("message");
    el.textContent = text;
    el.className = error ? "error" : "";
  };
  const signIn = (fragment) => location.replace(config.signInPath + location.search + (fragment || ""));

  async function viewerToken() {
    const response = await fetch(config.tokenPath + "?urn=" + encodeURIComponent(urn), {cache: "no-store"});
    const body = await response.json().catch(() => ({}));
    if (response.status === 401) {
      signIn();
      throw new Error("signing in…");
    }
    if (!response.ok) throw new Error(typeof body.detail === "string" ? body.detail : "HTTP " + response.status);
    return body;
  }

  function loadViewerScript() {
    return new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = config.viewerJs;
      script.onload = resolve;
      script.onerror = () => reject(new Error("the APS Viewer script did not load"));
      document.head.appendChild(script);
    });
  }

  async function open() {
    if (location.hash.startsWith("#key=")) {
      signIn(location.hash);  // a key in the address goes to the sign-in page, never near the Viewer's script
      return;
    }
    if (!urn) {
      say("add ?urn=<model urn> to the address", true);
      return;
    }
    const first = await viewerToken();
    await loadViewerScript();
    say("model " + urn);
    const options = {
      env: "AutodeskProduction2",
      api: first.viewer_api,
      getAccessToken: (done) => viewerToken().then((t) => done(t.access_token, t.expires_in))
                                             .catch((e) => say(e.message, true)),
    };
    Autodesk.Viewing.Initializer(options, () => {
      const viewer = new Autodesk.Viewing.GuiViewer3D(document.getElementById("viewer"));
      viewer.start();
      Autodesk.Viewing.Document.load("urn:" + urn,
        (doc) => viewer.loadDocumentNode(doc, doc.getRoot().getDefaultGeometry()),
        (code, text) => say("the Viewer could not load the model: " + (text || code), true));
    });
  }

  open().catch((error) => say(error.message, true));
})();
