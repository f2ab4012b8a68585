// docs.js renders the gateway's OpenAPI (Swagger 2.0) document, /openapi.json, as a readable API reference.
// It builds every element with the DOM API and sets text with textContent, so nothing in the document is
// ever parsed as HTML; it loads nothing but /openapi.json.
"use strict";

(function () {
  const main = document.getElementById("main");
  const nav = document.getElementById("nav");
  const filter = document.getElementById("filter");
  const methods = ["get", "post", "put", "patch", "delete"];

  // el creates an element with a class and children (strings become text nodes).
  function el(tag, cls, ...children) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return e;
  }

  // prose renders a proto comment: paragraphs split on blank lines, `code` spans, line breaks joined.
  function prose(text) {
    const box = el("div", "prose");
    if (!text) return box;
    for (const para of text.split(/\n\s*\n/)) {
      const p = el("p");
      const parts = para.replace(/\s*\n\s*/g, " ").split("`");
      parts.forEach((part, i) => p.append(i % 2 === 1 ? el("code", null, part) : document.createTextNode(part)));
      box.append(p);
    }
    return box;
  }

  function refName(ref) {
    return ref.replace(/^#\/definitions\//, "");
  }

  // typeOf describes a schema in one short phrase: "string (date-time)", "array of v1Task", "v1TaskState".
  function typeOf(s) {
    if (!s) return "";
    if (s.$ref) return refName(s.$ref);
    if (s.type === "array") return "array of " + typeOf(s.items);
    if (s.type === "object" && s.additionalProperties) return "map of " + typeOf(s.additionalProperties);
    let t = s.type || "object";
    if (s.format) t += " (" + s.format + ")";
    return t;
  }

  function anchorFor(ref) {
    return "def-" + refName(ref);
  }

  // typeCell renders a type, linking to the definition it names.
  function typeCell(s) {
    let target = s;
    while (target && target.type === "array") target = target.items;
    const text = typeOf(s);
    if (target && target.$ref) {
      const a = el("a", null, text);
      a.href = "#" + anchorFor(target.$ref);
      return el("td", "type", a);
    }
    return el("td", "type", text);
  }

  // fieldsTable renders an object schema's properties.
  function fieldsTable(schema, defs) {
    if (schema && schema.$ref) schema = defs[refName(schema.$ref)] || {};
    const props = (schema && schema.properties) || {};
    const names = Object.keys(props);
    if (names.length === 0) return el("p", "muted", "No fields.");
    const required = new Set(schema.required || []);
    const table = el("table", "fields", el("thead", null, el("tr", null, el("th", null, "Field"), el("th", null, "Type"), el("th", null, "Description"))));
    const body = el("tbody");
    for (const name of names) {
      const p = props[name];
      const flags = [];
      if (required.has(name)) flags.push("required");
      if (p.readOnly) flags.push("output only");
      body.append(el("tr", null,
        el("td", "name", el("code", null, name), flags.length ? el("span", "flag", " " + flags.join(", ")) : null),
        typeCell(p),
        el("td", null, prose(p.description || p.title || ""))));
    }
    table.append(body);
    return table;
  }

  function paramsTable(params) {
    const table = el("table", "fields", el("thead", null, el("tr", null,
      el("th", null, "Parameter"), el("th", null, "In"), el("th", null, "Type"), el("th", null, "Description"))));
    const body = el("tbody");
    for (const p of params) {
      const type = p.type === "array" ? "array of " + typeOf(p.items) : typeOf(p);
      const enumText = p.enum ? " One of: " + p.enum.join(", ") + "." : (p.items && p.items.enum ? " Each one of: " + p.items.enum.join(", ") + "." : "");
      body.append(el("tr", null,
        el("td", "name", el("code", null, p.name), p.required ? el("span", "flag", " required") : null),
        el("td", null, p.in),
        el("td", "type", type),
        el("td", null, prose((p.description || "") + enumText))));
    }
    table.append(body);
    return table;
  }

  function operationId(method, path) {
    return "op-" + method + "-" + path.replace(/[^A-Za-z0-9]+/g, "-");
  }

  // operation renders one operation: method, path, who may call it, parameters, body and responses.
  function operation(doc, method, path, op) {
    const defs = doc.definitions || {};
    const sec = op.security !== undefined ? op.security : (doc.security || []);
    const isPublic = sec.length === 0;
    const section = el("section", "op");
    section.id = operationId(method, path);
    section.dataset.search = (method + " " + path + " " + (op.operationId || "") + " " + (op.summary || "")).toLowerCase();
    section.append(el("h3", null, el("span", "method " + method, method.toUpperCase()), " ", el("code", "path", path),
      el("span", isPublic ? "auth public" : "auth bearer", isPublic ? "public" : "bearer token")));
    if (op.summary) section.append(prose(op.summary));
    if (op.description) section.append(prose(op.description));
    const params = (op.parameters || []).filter((p) => p.in !== "body");
    if (params.length) section.append(el("h4", null, "Parameters"), paramsTable(params));
    const body = (op.parameters || []).find((p) => p.in === "body");
    if (body) {
      section.append(el("h4", null, "Request body (application/json)"));
      if (body.description) section.append(prose(body.description));
      section.append(fieldsTable(body.schema, defs));
    }
    section.append(el("h4", null, "Responses"));
    const list = el("dl", "responses");
    for (const [code, r] of Object.entries(op.responses || {})) {
      const dd = el("dd", null, prose(r.description || ""));
      if (r.schema && (r.schema.$ref || r.schema.type)) dd.append(el("p", "muted", "Body: ", typeCell(r.schema).firstChild));
      for (const [name, h] of Object.entries(r.headers || {})) {
        dd.append(el("p", "muted", "Header ", el("code", null, name), ": " + (h.description || h.type || "")));
      }
      list.append(el("dt", null, code), dd);
    }
    section.append(list);
    return section;
  }

  function definition(name, schema) {
    const section = el("section", "def");
    section.id = "def-" + name;
    section.dataset.search = name.toLowerCase();
    section.append(el("h3", null, el("code", null, name)));
    if (schema.description || schema.title) section.append(prose(schema.description || schema.title));
    if (schema.enum) {
      section.append(el("p", null, "One of: ", ...schema.enum.flatMap((v, i) => (i ? [", ", el("code", null, String(v))] : [el("code", null, String(v))]))));
    } else {
      section.append(fieldsTable(schema, {}));
    }
    return section;
  }

  function render(doc) {
    document.getElementById("title").textContent = (doc.info && doc.info.title ? doc.info.title : "API") + " reference";
    document.title = document.getElementById("title").textContent;
    main.replaceChildren();
    nav.replaceChildren();

    const intro = el("section", "intro");
    if (doc.info && doc.info.description) intro.append(prose(doc.info.description));
    const schemes = doc.securityDefinitions || {};
    for (const [name, s] of Object.entries(schemes)) {
      const auth = prose(s.description || s.name || "");
      auth.className = "prose muted";
      intro.append(el("h4", null, "Authentication (" + name + ")"), auth);
    }
    main.append(intro);

    // Group operations by their first tag (the gRPC service), in the document's tag order.
    const groups = new Map();
    for (const t of doc.tags || []) groups.set(t.name, { tag: t, ops: [] });
    for (const [path, item] of Object.entries(doc.paths || {})) {
      for (const method of methods) {
        const op = item[method];
        if (!op) continue;
        const tag = (op.tags && op.tags[0]) || "Other";
        if (!groups.has(tag)) groups.set(tag, { tag: { name: tag }, ops: [] });
        groups.get(tag).ops.push({ method, path, op });
      }
    }
    for (const { tag, ops } of groups.values()) {
      if (ops.length === 0) continue;
      const group = el("section", "group");
      group.id = "tag-" + tag.name;
      group.append(el("h2", null, tag.name));
      if (tag.description) group.append(prose(tag.description));
      const navList = el("ul");
      for (const { method, path, op } of ops) {
        group.append(operation(doc, method, path, op));
        const a = el("a", null, el("span", "method " + method, method.toUpperCase()), " ", path);
        a.href = "#" + operationId(method, path);
        a.dataset.target = operationId(method, path);
        navList.append(el("li", null, a));
      }
      const navHead = el("a", "navtag", tag.name);
      navHead.href = "#tag-" + tag.name;
      nav.append(navHead, navList);
      main.append(group);
    }

    const defs = el("section", "group");
    defs.id = "definitions";
    defs.append(el("h2", null, "Types"));
    for (const name of Object.keys(doc.definitions || {}).sort()) defs.append(definition(name, doc.definitions[name]));
    const typesLink = el("a", "navtag", "Types");
    typesLink.href = "#definitions";
    nav.append(typesLink);
    main.append(defs);
    applyFilter();
  }

  // applyFilter hides the operations and types that do not contain the filter text.
  function applyFilter() {
    const q = filter.value.trim().toLowerCase();
    for (const s of main.querySelectorAll("section.op, section.def")) {
      s.hidden = q !== "" && !s.dataset.search.includes(q);
    }
    for (const a of nav.querySelectorAll("a[data-target]")) {
      const target = document.getElementById(a.dataset.target);
      a.parentElement.hidden = target ? target.hidden : false;
    }
  }

  filter.addEventListener("input", applyFilter);

  fetch("/openapi.json", { headers: { Accept: "application/json" } })
    .then((r) => {
      if (!r.ok) throw new Error("GET /openapi.json: HTTP " + r.status);
      return r.json();
    })
    .then((doc) => {
      render(doc);
      if (location.hash) {
        const target = document.getElementById(decodeURIComponent(location.hash.slice(1)));
        if (target) target.scrollIntoView();
      }
    })
    .catch((err) => {
      main.replaceChildren(el("p", "error", "Could not load the API description: " + err.message));
    });
})();
