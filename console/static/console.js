// The TracSeq console's script: fetches the page's content (rendered and
// escaped by the server), refreshes it, sends the bearer token when the
// service requires one, and carries out operator actions after a
// confirmation. It never builds HTML from data itself.
(function () {
  "use strict";
  var body = document.body;
  var partURL = body.dataset.part;
  var refresh = Math.max(parseInt(body.dataset.refresh, 10) || 2000, 250);
  var authRequired = body.dataset.auth === "required";
  var KEY = "tracseq-console-token";
  var main = document.getElementById("content");
  var live = document.getElementById("live");
  var notice = document.getElementById("notice");
  var login = document.getElementById("login");
  var loginError = document.getElementById("login-error");
  var forget = document.getElementById("forget");
  var dialog = document.getElementById("confirm");
  var last = main.innerHTML;
  var busy = false;

  function token() { return sessionStorage.getItem(KEY) || ""; }
  function headers(extra) {
    var h = extra || {};
    var t = token();
    if (t) { h.Authorization = "Bearer " + t; }
    return h;
  }
  function say(text, bad) {
    notice.textContent = text;
    notice.classList.toggle("bad", !!bad);
    notice.hidden = !text;
  }
  function askToken(message) {
    sessionStorage.removeItem(KEY);
    forget.hidden = true;
    main.replaceChildren();
    last = "";
    login.hidden = false;
    loginError.textContent = message || "";
    loginError.hidden = !message;
    live.textContent = "waiting for a token";
    document.getElementById("token").focus();
  }

  // load fetches the content and puts it in place, keeping the open or
  // closed state of its <details>.
  function load() {
    if (busy || (dialog && dialog.open)) { return Promise.resolve(); }
    if (authRequired && !token()) { askToken(""); return Promise.resolve(); }
    busy = true;
    return fetch(partURL, { headers: headers({ Accept: "text/html" }), cache: "no-store", credentials: "omit" })
      .then(function (r) {
        if (r.status === 401) { askToken(token() ? "That token was refused." : ""); return; }
        return r.text().then(function (html) {
          if (html !== last) {
            var open = {};
            main.querySelectorAll("details[id]").forEach(function (d) { open[d.id] = d.open; });
            main.innerHTML = html;
            main.querySelectorAll("details[id]").forEach(function (d) {
              if (d.id in open) { d.open = open[d.id]; }
            });
            last = html;
          }
          login.hidden = true;
          forget.hidden = !authRequired;
          live.textContent = "updated " + new Date().toLocaleTimeString();
          live.classList.remove("stale");
        });
      })
      .catch(function (e) {
        live.textContent = "cannot reach the service (" + e.message + ")";
        live.classList.add("stale");
      })
      .finally(function () { busy = false; });
  }

  // act asks for confirmation, then sends the operator action to the API.
  function act(button) {
    var article = button.closest("article.saga");
    if (!article) { return; }
    var id = article.dataset.id;
    var action = button.dataset.action;
    var name = article.querySelector(".saga-name").textContent;
    document.getElementById("confirm-text").textContent =
      action.charAt(0).toUpperCase() + action.slice(1) + " saga \u201c" + name + "\u201d (" + id + ")? " + (button.title || "");
    document.getElementById("confirm-ok").textContent = "Yes, " + action;
    dialog.returnValue = "";
    dialog.showModal();
    dialog.addEventListener("close", function onClose() {
      dialog.removeEventListener("close", onClose);
      if (dialog.returnValue !== "ok") { return; }
      fetch("/api/v1/sagas/" + encodeURIComponent(id) + "/" + encodeURIComponent(action), {
        method: "POST", headers: headers({ Accept: "application/json" }), credentials: "omit"
      }).then(function (r) {
        if (r.status === 401) { askToken("That token was refused."); return; }
        return r.json().then(function (doc) {
          if (r.ok) {
            say(action + " requested: the saga is " + doc.status + (doc.control_request ? " (" + doc.control_request + " pending)" : ""), false);
          } else {
            say(action + " refused: " + (doc.detail || doc.title || r.status), true);
          }
          return load();
        });
      }).catch(function (e) { say(action + " could not be sent: " + e.message, true); });
    });
  }

  main.addEventListener("click", function (ev) {
    var b = ev.target.closest("button[data-action]");
    if (b) { ev.preventDefault(); act(b); }
  });
  document.getElementById("login-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var t = document.getElementById("token").value.trim();
    if (!t) { return; }
    sessionStorage.setItem(KEY, t);
    document.getElementById("token").value = "";
    loginError.hidden = true;
    load();
  });
  forget.addEventListener("click", function () { askToken(""); });

  if (authRequired || !last.trim()) { load(); } else { live.textContent = "live"; }
  setInterval(load, refresh);
})();
