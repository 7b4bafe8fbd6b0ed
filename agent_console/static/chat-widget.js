// The embeddable chat widget: vanilla JS, no build step. Every message is rendered with
// textContent, never innerHTML, so markup a visitor or agent types shows as text.
// Embed: <script src="https://support.example.com/static/chat-widget.js" defer></script>
// Optional attributes: data-topic="billing" (the chat queue), data-language="en".
(function () {
  "use strict";
  var script = document.currentScript;
  var base = script ? new URL(script.src).origin : location.origin;
  var wsUrl = base.replace(/^http/, "ws") + "/chat/ws";
  var tokenKey = "cc-chat-token";
  var topic = (script && script.dataset.topic) || "";
  var language = (script && script.dataset.language) || "";

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  var box = el("section", { id: "cc-chat", "aria-label": "Chat with us" });
  var log = el("ol", { id: "cc-chat-log", "aria-live": "polite" });
  var typing = el("p", { id: "cc-chat-typing", hidden: "" }, "Agent is typing...");
  var form = el("form", { id: "cc-chat-form" });
  var input = el("input", { id: "cc-chat-input", maxlength: "4000", autocomplete: "off", "aria-label": "Message" });
  var send = el("button", { type: "submit", id: "cc-chat-send" }, "Send");
  var status = el("p", { id: "cc-chat-status" }, "Connecting...");
  var offline = el("form", { id: "cc-chat-offline", hidden: "" });
  var email = el("input", { id: "cc-chat-email", type: "email", placeholder: "Your email", required: "" });
  var note = el("textarea", { id: "cc-chat-note", maxlength: "4000", placeholder: "Your message", required: "" });
  offline.append(el("p", {}, "Nobody can answer right now. Leave a message:"), email, note,
                 el("button", { type: "submit" }, "Send by email"));
  var rating = el("div", { id: "cc-chat-rating", hidden: "" });
  [1, 2, 3, 4, 5].forEach(function (n) {
    var b = el("button", { type: "button", "data-score": String(n) }, String(n));
    b.addEventListener("click", function () { sendFrame({ type: "rate", score: n }); });
    rating.append(b);
  });
  var end = el("button", { type: "button", id: "cc-chat-end" }, "End chat");
  form.append(input, send);
  box.append(status, log, typing, form, end, offline, rating);
  (document.getElementById("cc-chat-root") || document.body).append(box);

  var ws = null;
  var typingTimer = null;

  function sendFrame(frame) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
  }

  function show(who, author, text) {
    var item = el("li", { "class": "cc-msg cc-" + who });
    item.append(el("b", {}, author + ": "), el("span", { "class": "cc-body" }, text));
    log.append(item);
  }

  function connect() {
    ws = new WebSocket(wsUrl);
    ws.onopen = function () {
      sendFrame({ type: "hello", token: localStorage.getItem(tokenKey) || "", topic: topic,
                  language: language });
    };
    ws.onmessage = function (event) {
      var f = JSON.parse(event.data);
      if (f.type === "welcome") {
        localStorage.setItem(tokenKey, f.token);
        status.textContent = f.online ? "We are online." : "Ask us anything.";
      } else if (f.type === "message") {
        typing.hidden = true;
        show(f.from, f.from === "agent" ? f.author : "You", f.body);
      } else if (f.type === "typing") {
        typing.hidden = false;
        clearTimeout(typingTimer);
        typingTimer = setTimeout(function () { typing.hidden = true; }, 4000);
      } else if (f.type === "waiting") {
        var about = f.expected_wait === null ? "" :
          " (about " + Math.max(1, Math.ceil(f.expected_wait / 60)) + " min)";
        status.textContent = "Waiting for an agent: you are number " + f.position + " in line" +
          about + ".";
      } else if (f.type === "assigned") {
        status.textContent = f.agent + " joined the chat.";
      } else if (f.type === "offline") {
        status.textContent = f.message;
        offline.hidden = false;
      } else if (f.type === "offline_stored") {
        offline.hidden = true;
        status.textContent = "Thank you: we will answer by email (ticket " + f.ticket_number + ").";
      } else if (f.type === "ended") {
        status.textContent = "The chat has ended. How did we do?";
        rating.hidden = false;
      } else if (f.type === "rated") {
        rating.hidden = true;
        status.textContent = "Thank you for your rating.";
      } else if (f.type === "error") {
        status.textContent = f.message;
      }
    };
    ws.onclose = function () { status.textContent = "Disconnected."; };
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!input.value.trim()) return;
    sendFrame({ type: "message", text: input.value });
    input.value = "";
  });
  input.addEventListener("input", function () { sendFrame({ type: "typing" }); });
  end.addEventListener("click", function () { sendFrame({ type: "end" }); });
  offline.addEventListener("submit", function (event) {
    event.preventDefault();
    sendFrame({ type: "offline_message", email: email.value, text: note.value });
  });
  connect();
})();
