// The Relay console: sign in with the sender's API token, then the sections the API offers.
//
// Each section's view gets the page's <main> and a context (what the API offers, how to report),
// and returns a stop() that ends its refreshing when another view replaces it.

import { api, ApiError, loadCapabilities, session } from "./api.js";
import { el, replace } from "./dom.js";
import { currentRoute, href } from "./router.js";
import { availableSections } from "./sections.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const signOutButton = document.getElementById("sign-out");
const notice = document.getElementById("notice");
const alertBox = document.getElementById("alert");

let stopView = null;
let sections = [];

const context = {
  capabilities: null,
  // A short confirmation of what was done (announced politely).
  notify(text) {
    notice.textContent = text;
  },
  // An error of the API, or of the console: what it said, with its request id.
  fail(error) {
    if (error instanceof ApiError && error.status === 401) {
      signOut("The API refused the token (it may have been rotated): sign in again.");
      return;
    }
    const details = error instanceof ApiError ? error.details.map((detail) => `${detail.path}: ${detail.message}`) : [];
    const reference = error instanceof ApiError && error.requestId ? ` (request ${error.requestId})` : "";
    replace(alertBox, `${error.message}${reference}`, details.length ? el("ul", {}, details.map((d) => el("li", {}, d))) : null);
    alertBox.hidden = false;
  },
  clearAlert() {
    alertBox.hidden = true;
    alertBox.replaceChildren();
  },
};

function signOut(reason = "Signed out: the token is forgotten.") {
  session.signOut();
  context.clearAlert();
  context.notify(reason);
  render();
}

function showSignIn() {
  nav.hidden = true;
  signOutButton.hidden = true;
  const input = el("input", { id: "token", name: "token", type: "password", autocomplete: "off", required: true, spellcheck: "false" });
  const form = el("form", { class: "sign-in", novalidate: true },
    el("h1", {}, "Sign in"),
    el("p", {}, "Use the sender's API token (it starts with rly_). It stays in this tab until you sign out or close it."),
    el("label", { for: "token" }, "API token"),
    input,
    el("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) {
      context.fail(new Error("Enter the API token."));
      return;
    }
    try {
      await api.check(token);
    } catch (error) {
      context.fail(error instanceof ApiError && error.status === 401 ? new Error("That token was not accepted.") : error);
      return;
    }
    session.signIn(token);
    context.clearAlert();
    context.notify("Signed in.");
    render();
  });
  replace(main, form);
  input.focus();
}

function showNav(current) {
  replace(nav, sections.map((section) =>
    el("a", { href: href([section.id]), "aria-current": section === current ? "page" : false }, section.title)));
  nav.hidden = false;
  signOutButton.hidden = false;
}

function render() {
  if (stopView) stopView();
  stopView = null;
  if (!session.token()) {
    showSignIn();
    return;
  }
  const route = currentRoute();
  const section = sections.find((candidate) => candidate.id === route.parts[0]) || sections[0];
  showNav(section);
  context.clearAlert();
  stopView = section.open(main, route, context);
  main.querySelector("h1")?.focus();
}

async function start() {
  try {
    context.capabilities = await loadCapabilities();
  } catch (error) {
    context.fail(error);
    return;
  }
  sections = availableSections(context.capabilities);
  signOutButton.addEventListener("click", () => signOut());
  window.addEventListener("hashchange", () => {
    context.notify(""); // what was done on the page left behind
    render();
  });
  render();
}

start();
