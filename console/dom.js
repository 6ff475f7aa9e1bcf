// Elements built from data, as text only.
//
// Whatever a sender sent (headers, body, ids, URLs) or the API answered becomes a text node or an
// attribute value, never markup: nothing in the console hands a string to the HTML parser.
// Links only ever point into the console (#/...) or to an https page (the Step Functions console).

const SAFE_LINK = /^(#\/|https:\/\/)/;

export function el(tag, properties = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(properties)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) {
      node.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      node.className = value;
    } else {
      if (name === "href" && !SAFE_LINK.test(String(value))) throw new Error(`refused link ${value}`);
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  node.append(...nodes(children));
  return node;
}

function nodes(children) {
  return children.flat(Infinity).filter((child) => child !== null && child !== undefined && child !== false)
    .map((child) => (child instanceof Node ? child : document.createTextNode(String(child))));
}

export function replace(parent, ...children) {
  parent.replaceChildren(...nodes(children));
}

const LOCAL_TIME = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

// A time in the browser's zone, its UTC form on hover (the API's times are RFC 3339 in UTC).
export function time(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return el("time", { datetime: iso, title: `${iso} (UTC)` }, LOCAL_TIME.format(date));
}

// A status (a message's or a circuit's) in words, with a colour of its own.
export function badge(state) {
  const name = String(state || "UNKNOWN");
  return el("span", { class: `badge badge-${name.toLowerCase().replace(/[^a-z_]/g, "")}` }, name);
}

// A table with a caption, column headers and rows (each row: an array of cells' contents).
export function table(caption, columns, rows, emptyText) {
  const body = rows.length
    ? rows.map((cells) => el("tr", {}, cells.map((cell) => el("td", {}, cell))))
    : [el("tr", {}, el("td", { colspan: columns.length, class: "empty" }, emptyText))];
  return el("div", { class: "table-wrap" },
    el("table", {},
      el("caption", {}, caption),
      el("thead", {}, el("tr", {}, columns.map((column) => el("th", { scope: "col" }, column)))),
      el("tbody", {}, body)));
}

// Term/description pairs; pairs whose description is empty are left out.
export function facts(pairs) {
  const shown = pairs.filter(([, value]) => value !== undefined && value !== null && value !== "");
  return el("dl", { class: "facts" }, shown.map(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
}

// Ask before acting: a modal dialog with `question`, answered with the `yes` button or "No" (or Escape).
export function confirmAction(question, yes) {
  return new Promise((resolve) => {
    const dialog = el("dialog", { class: "confirm", "aria-label": question },
      el("p", {}, question),
      el("div", { class: "buttons" },
        el("button", { type: "button", onclick: () => dialog.close("no") }, "No"),
        el("button", { type: "button", class: "danger", onclick: () => dialog.close("yes") }, yes)));
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "yes");
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

// Runs `task` every `seconds` while the tab is visible, one run at a time; returns its stop().
export function every(seconds, task) {
  let running = false;
  const tick = async () => {
    if (running || document.visibilityState !== "visible") return;
    running = true;
    try {
      await task();
    } finally {
      running = false;
    }
  };
  const timer = setInterval(tick, seconds * 1000);
  return () => clearInterval(timer);
}
