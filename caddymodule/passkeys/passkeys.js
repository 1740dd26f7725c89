// passkeys.js: the one script of authgate's pages. It calls the browser's
// WebAuthn API, which no form can, and posts the authenticator's answer as
// JSON to the endpoints the page names in data-begin and data-finish.
// Everything else the pages do works without it.
"use strict";
(() => {
  const decode = (text) => {
    const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
    return Uint8Array.from(bin, (c) => c.charCodeAt(0)).buffer;
  };
  const encode = (buf) => {
    let bin = "";
    for (const b of new Uint8Array(buf)) bin += String.fromCharCode(b);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  };

  const post = async (url, body) => {
    const res = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const answer = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(answer.error || "The server refused (" + res.status + "). Try again.");
    return answer;
  };

  // The server's options, with the binary members as the API wants them.
  const creationOptions = (o) => {
    const pk = o.publicKey;
    pk.challenge = decode(pk.challenge);
    pk.user.id = decode(pk.user.id);
    for (const c of pk.excludeCredentials || []) c.id = decode(c.id);
    return { publicKey: pk };
  };
  const requestOptions = (o) => {
    const pk = o.publicKey;
    pk.challenge = decode(pk.challenge);
    for (const c of pk.allowCredentials || []) c.id = decode(c.id);
    return { publicKey: pk };
  };

  // The answer as JSON, binary members in base64url.
  const credentialJSON = (cred) => {
    const r = cred.response;
    const response = { clientDataJSON: encode(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = encode(r.attestationObject);
      if (r.getTransports) response.transports = r.getTransports();
    } else {
      response.authenticatorData = encode(r.authenticatorData);
      response.signature = encode(r.signature);
      if (r.userHandle) response.userHandle = encode(r.userHandle);
    }
    return {
      id: cred.id,
      rawId: encode(cred.rawId),
      type: cred.type,
      authenticatorAttachment: cred.authenticatorAttachment || undefined,
      clientExtensionResults: cred.getClientExtensionResults(),
      response,
    };
  };

  // Why the browser gave no answer, in words.
  const refusal = (err) => {
    if (err && err.name === "NotAllowedError") return "No passkey was used: it was cancelled, or the time ran out.";
    if (err && err.name === "InvalidStateError") return "This device holds one of your passkeys already.";
    return (err && err.message) || "Something went wrong. Try again.";
  };

  const show = (box, text) => {
    box.textContent = text;
    box.hidden = !text;
  };

  const supported = !!(window.PublicKeyCredential && navigator.credentials);

  // A sign-in: "Sign in with a passkey" on the login page (no ticket), or
  // the passkey step after the password (the step's ticket).
  const offer = (panel, button) => {
    if (!panel || !supported) return;
    const box = document.getElementById("passkey-error");
    const ticket = panel.dataset.ticket ? { ticket: panel.dataset.ticket } : {};
    panel.hidden = false;
    button.addEventListener("click", async () => {
      button.disabled = true;
      show(box, "");
      try {
        const options = await post(panel.dataset.begin, ticket);
        const cred = await navigator.credentials.get(requestOptions(options));
        const redirect = document.querySelector("input[name=redirect]");
        const done = await post(panel.dataset.finish, {
          ...ticket,
          credential: credentialJSON(cred),
          redirect: redirect ? redirect.value : "/",
        });
        window.location.assign(done.next);
      } catch (err) {
        show(box, refusal(err));
        button.disabled = false;
      }
    });
  };
  offer(document.getElementById("passkey-signin"), document.getElementById("passkey-button"));
  offer(document.getElementById("passkey-second"), document.getElementById("passkey-second-button"));

  // "Add a passkey" on the passkeys page.
  const add = document.getElementById("passkey-add");

  // The recovery codes a first second factor brings, shown this once.
  const showCodes = (codes, next) => {
    const box = document.getElementById("passkey-codes");
    const list = box.querySelector("ol");
    for (const code of codes) {
      const item = document.createElement("li");
      item.textContent = code;
      list.appendChild(item);
    }
    box.querySelector("a").href = next;
    add.hidden = true;
    const none = document.getElementById("none");
    if (none) none.hidden = true;
    box.hidden = false;
    box.querySelector("h3").focus();
  };
  if (add) {
    const box = document.getElementById("passkey-error");
    if (!supported) {
      show(box, "This browser cannot make passkeys.");
      return;
    }
    add.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = add.querySelector("button[type=submit]");
      button.disabled = true;
      show(box, "");
      try {
        const password = add.elements.namedItem("current_password");
        const options = await post(add.dataset.begin, {
          name: add.elements.namedItem("name").value,
          current_password: password ? password.value : "",
        });
        const cred = await navigator.credentials.create(creationOptions(options));
        const done = await post(add.dataset.finish, credentialJSON(cred));
        if (done.recovery_codes && done.recovery_codes.length) {
          showCodes(done.recovery_codes, done.next);
          return;
        }
        window.location.assign(done.next);
      } catch (err) {
        show(box, refusal(err));
        button.disabled = false;
      }
    });
  }
})();
