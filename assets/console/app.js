// The marketgate ops console. Loaded by the login page with the admin token, which it
// reads from sessionStorage. Every figure comes from the admin JSON API; the console
// decides nothing itself (no rule logic here): it draws, asks and acts.
(function () {
  'use strict';
  var KEY = 'marketgate.admin.token';
  var SVG_NS = 'http://www.w3.org/2000/svg'; // an XML namespace name, never fetched
  var TOKEN = sessionStorage.getItem(KEY);
  var STATUSES = ['served', 'limited', 'withdrawn'];

  var state = {
    world: null,
    table: null,       // GET /admin/v1/rules?at=
    rows: {},          // jurisdiction code -> row of the table
    at: null,          // null = now, else an ISO instant
    selected: null,    // jurisdiction code
    overrides: [],
    phone: '',         // signals the jurisdiction panel explains a request with
    declared: '',
    loadedAt: 0,
    skew: 0,           // the service's clock minus this browser's, in ms
    me: null,          // GET /admin/v1/whoami: name, identity, role, scope, approval policy
    proposals: []      // GET /admin/v1/proposals: pending changes
  };
  var ROLES = ['viewer', 'operator', 'approver', 'admin'];
  // Whether the signed-in token has `role` or above. Only hides what the service would
  // refuse anyway (403); scopes are the service's to check.
  function may(role) {
    return !!state.me && ROLES.indexOf(state.me.role) >= ROLES.indexOf(role);
  }
  function serverNow() { return Date.now() + state.skew; }

  // ---- small helpers -------------------------------------------------------------
  function $(id) { return document.getElementById(id); }
  function el(tag, attrs) {
    var e = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) return;
        if (k === 'text') e.textContent = v;
        else if (k === 'on') Object.keys(v).forEach(function (ev) { e.addEventListener(ev, v[ev]); });
        else e.setAttribute(k, v === true ? '' : v);
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined || c === false) continue;
      if (Array.isArray(c)) c.forEach(function (x) { if (x) e.appendChild(typeof x === 'string' ? document.createTextNode(x) : x); });
      else e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    }
    return e;
  }
  function svg(tag, attrs) {
    var e = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
  function badge(status) { return el('span', { 'class': 'badge ' + status, text: status }); }
  function when(iso) {
    if (!iso) return '';
    var d = new Date(iso);
    return isNaN(d) ? iso : d.toISOString().replace('T', ' ').replace(/:\d\d\.\d+Z$|:\d\dZ$/, ' UTC');
  }
  function left(seconds) {
    if (seconds === undefined || seconds === null) return 'no expiry';
    if (seconds <= 0) return 'expiring';
    var d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600),
      m = Math.floor(seconds % 3600 / 60), s = Math.floor(seconds % 60);
    if (d) return d + 'd ' + h + 'h left';
    if (h) return h + 'h ' + m + 'm left';
    if (m) return m + 'm ' + s + 's left';
    return s + 's left';
  }
  function nameOf(code) {
    var r = state.rows[code];
    return r && r.name ? r.name + ' (' + code + ')' : code;
  }

  // ---- the admin API -------------------------------------------------------------
  function api(method, path, body) {
    var init = { method: method, headers: { Authorization: 'Bearer ' + TOKEN }, cache: 'no-store', credentials: 'omit' };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (r) {
      if (r.status === 401) { logout('Your token is no longer accepted; sign in again.'); throw new Error('unauthorized'); }
      return r.text().then(function (t) {
        var json = null;
        try { json = t ? JSON.parse(t) : null; } catch (e) { json = null; }
        return { status: r.status, ok: r.ok, body: json };
      });
    });
  }
  function atQuery() { return state.at ? '?at=' + encodeURIComponent(state.at) : ''; }
  // The jurisdiction panel's query: the instant, and the signals the operator explains
  // a request with (a phone number, a declared country).
  function detailQuery() {
    var q = [];
    if (state.at) q.push('at=' + encodeURIComponent(state.at));
    if (state.phone) q.push('phone=' + encodeURIComponent(state.phone));
    if (state.declared) q.push('declared=' + encodeURIComponent(state.declared));
    return q.length ? '?' + q.join('&') : '';
  }
  function clearSignals() {
    state.phone = '';
    state.declared = '';
    select(state.selected);
  }
  function errorText(res) {
    var e = res.body && res.body.error;
    return e ? e.message + ' (' + e.code + ', HTTP ' + res.status + ')' : 'HTTP ' + res.status;
  }

  function logout(message) {
    sessionStorage.removeItem(KEY);
    TOKEN = null;
    clear($('app')).hidden = true;
    clear($('bar-tools'));
    $('login-view').hidden = false;
    $('login-error').textContent = message || '';
    $('token').focus();
    if (window.__marketgateTimer) clearInterval(window.__marketgateTimer);
  }

  // ---- layout --------------------------------------------------------------------
  function layout() {
    var tools = clear($('bar-tools'));
    tools.appendChild(el('span', { id: 'rules-version', 'class': 'mono', title: 'rules version' }));
    tools.appendChild(el('span', { id: 'whoami' }));
    tools.appendChild(el('button', { id: 'logout', type: 'button', on: { click: function () { logout('Logged out.'); } } }, 'Log out'));

    var app = clear($('app'));
    app.hidden = false;
    app.appendChild(el('section', { 'class': 'card timebar', 'aria-label': 'Instant shown' },
      el('label', { 'for': 'when-range' }, 'Map at'),
      el('input', { id: 'when-range', type: 'range', min: '0', max: '1095', step: '1', value: '0',
        'aria-describedby': 'when-label', 'aria-valuetext': 'now' }),
      el('label', { 'for': 'when-date', 'class': 'sr-only' }, 'Date and time (your local time)'),
      el('input', { id: 'when-date', type: 'datetime-local' }),
      el('button', { id: 'when-next', type: 'button', title: 'Jump to the next scheduled change or demand' }, 'Next change ▸'),
      el('button', { id: 'when-now', type: 'button' }, 'Now'),
      el('span', { id: 'when-label', 'aria-live': 'polite' }, 'now')));

    var legend = el('ul', { 'class': 'legend', 'aria-label': 'Legend' });
    [['served', 'st-served', 'Served'], ['limited', 'st-limited', 'Limited (a feature off)'],
      ['withdrawn', 'st-withdrawn', 'Withdrawn'], ['overridden', 'ov', 'Overridden by an operator'],
      ['nodata', 'st-nodata', 'No decision (no ISO code)']].forEach(function (l) {
      var s = svg('svg', { viewBox: '0 0 28 16', 'aria-hidden': 'true' });
      if (l[0] === 'overridden') s.appendChild(svg('rect', { width: 28, height: 16, 'class': 'st-served' }));
      s.appendChild(svg('rect', { width: 28, height: 16, 'class': l[1] }));
      legend.appendChild(el('li', { 'data-legend': l[0] }, s, l[2]));
    });

    app.appendChild(el('div', { 'class': 'top' },
      el('section', { 'class': 'card', 'aria-labelledby': 'map-title' },
        el('h2', { id: 'map-title' }, 'Markets'),
        el('div', { 'class': 'mapwrap' },
          el('div', { id: 'map' }),
          el('div', { id: 'tooltip', 'class': 'tooltip', role: 'tooltip', hidden: true })),
        legend,
        el('p', { 'class': 'muted', id: 'map-help' },
          'Hover or focus a country for its status; click or press Enter for the explanation. ',
          'In the map, arrow keys move between countries. Tiny countries are circles.'),
        el('div', { 'class': 'find' },
          el('label', { 'for': 'find' }, 'Jurisdiction'),
          el('input', { id: 'find', list: 'jurisdiction-list', placeholder: 'FR, US-UT, EU, *', size: '14' }),
          el('datalist', { id: 'jurisdiction-list' }),
          el('button', { id: 'find-go', type: 'button' }, 'Explain')),
        el('h3', null, 'Not fully served'),
        el('ul', { id: 'attention', 'class': 'attention' })),
      el('aside', { id: 'detail', 'class': 'card', 'aria-live': 'polite', 'aria-label': 'Jurisdiction' },
        el('h2', null, 'Select a jurisdiction'),
        el('p', { 'class': 'muted' }, 'Its decision, the trail that produced it, the demands in force, upcoming changes and its override appear here; set or clear an override below it.'))));

    app.appendChild(el('div', { 'class': 'panels' },
      el('section', { 'class': 'card', id: 'proposals-panel', 'aria-labelledby': 'pr-title' },
        el('h2', { id: 'pr-title' }, 'Pending approvals'), el('div', { id: 'proposals' })),
      el('section', { 'class': 'card', id: 'overrides-panel', 'aria-labelledby': 'ov-title' },
        el('h2', { id: 'ov-title' }, 'Active overrides'), el('div', { id: 'overrides' })),
      el('section', { 'class': 'card', id: 'state-panel', 'aria-labelledby': 'st-title' },
        el('h2', { id: 'st-title' }, 'Rules, reload and GeoIP'), el('div', { id: 'service' })),
      el('section', { 'class': 'card', id: 'shadow-panel', 'aria-labelledby': 'sh-title' },
        el('h2', { id: 'sh-title' }, 'Shadow changes'), el('div', { id: 'shadow' })),
      el('section', { 'class': 'card', id: 'audit-panel', 'aria-labelledby': 'au-title' },
        el('h2', { id: 'au-title' }, 'Audit log'), el('div', { id: 'audit' }))));

    $('when-range').addEventListener('input', function () {
      var days = +this.value;
      setAt(days === 0 ? null : new Date(serverNow() + days * 86400000).toISOString(), 'range');
    });
    $('when-date').addEventListener('change', function () {
      if (!this.value) return setAt(null, 'date');
      var d = new Date(this.value);
      if (!isNaN(d)) setAt(d.toISOString(), 'date');
    });
    $('when-now').addEventListener('click', function () { setAt(null, 'now'); });
    $('when-next').addEventListener('click', function () {
      if (state.table && state.table.next_boundary) setAt(state.table.next_boundary, 'next');
    });
    $('find-go').addEventListener('click', function () { var v = $('find').value.trim(); if (v) select(v); });
    $('find').addEventListener('keydown', function (ev) {
      if (ev.key === 'Enter') { ev.preventDefault(); var v = this.value.trim(); if (v) select(v); }
    });
  }

  var atTimer = null;
  function setAt(iso, from) {
    state.at = iso;
    var label = $('when-label');
    if (!iso) {
      label.textContent = 'now';
      label.className = '';
      if (from !== 'range') $('when-range').value = '0';
      if (from !== 'date') $('when-date').value = '';
    } else {
      label.textContent = 'at ' + when(iso) + (Date.parse(iso) > serverNow()
        ? ' (future: the changes and demands scheduled by then apply)' : ' (past)');
      label.className = 'future';
      var days = Math.round((new Date(iso) - serverNow()) / 86400000);
      if (from !== 'range') $('when-range').value = String(Math.max(0, Math.min(1095, days)));
      if (from !== 'date') {
        var d = new Date(iso);
        var local = new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
        $('when-date').value = local;
      }
    }
    $('when-range').setAttribute('aria-valuetext', label.textContent);
    clearTimeout(atTimer);
    atTimer = setTimeout(function () {
      refreshMap().then(function () { if (state.selected) select(state.selected, true); });
    }, 120);
  }

  // ---- the map -------------------------------------------------------------------
  function drawMap() {
    var w = state.world;
    var root = svg('svg', { viewBox: '0 0 ' + w.width + ' ' + w.height, role: 'group',
      'aria-label': 'World map of market status; arrow keys move between countries' });
    var defs = svg('defs', {});
    var pl = svg('pattern', { id: 'pat-limited', width: 5, height: 5, patternUnits: 'userSpaceOnUse' });
    pl.appendChild(svg('rect', { width: 5, height: 5, fill: '#e8a317' }));
    pl.appendChild(svg('circle', { cx: 2.5, cy: 2.5, r: 1.1, fill: '#6b4700' }));
    var pw = svg('pattern', { id: 'pat-withdrawn', width: 4, height: 4, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' });
    pw.appendChild(svg('rect', { width: 4, height: 4, fill: '#9e1b32' }));
    pw.appendChild(svg('line', { x1: 0, y1: 0, x2: 0, y2: 4, stroke: '#ffffff', 'stroke-width': 1.1 }));
    var po = svg('pattern', { id: 'pat-over', width: 5, height: 5, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(-45)' });
    po.appendChild(svg('line', { x1: 0, y1: 0, x2: 0, y2: 5, stroke: '#5b2a86', 'stroke-width': 1.6 }));
    po.appendChild(svg('line', { x1: 0, y1: 2.5, x2: 5, y2: 2.5, stroke: '#5b2a86', 'stroke-width': .8 }));
    defs.appendChild(pl); defs.appendChild(pw); defs.appendChild(po);
    root.appendChild(defs);
    root.appendChild(svg('path', { 'class': 'sphere', d: w.sphere }));
    var shapes = svg('g', { id: 'countries' });
    var overlay = svg('g', { id: 'overlay', 'aria-hidden': 'true' });
    w.countries.forEach(function (c) {
      var p = svg('path', { d: c.d, 'class': 'c st-nodata', 'data-code': c.code, tabindex: '-1', role: 'button' });
      shapes.appendChild(p);
      if (c.dot) {
        var dot = svg('circle', { cx: c.dot[0], cy: c.dot[1], r: 2.6, 'class': 'c dot st-nodata', 'data-code': c.code, 'aria-hidden': 'true' });
        shapes.appendChild(dot);
      }
    });
    root.appendChild(shapes);
    root.appendChild(overlay);
    var holder = clear($('map'));
    holder.appendChild(root);

    var tip = $('tooltip');
    function codeOf(t) { return t && t.getAttribute && t.getAttribute('data-code'); }
    function showTip(code, x, y) {
      var r = state.rows[code];
      clear(tip);
      tip.appendChild(el('strong', null, nameOf(code)));
      if (!r || !r.status) {
        tip.appendChild(el('div', null, 'no decision for this area'));
      } else {
        tip.appendChild(el('div', null, 'status: ' + r.status + (r.overridden_by ? ' (overridden on ' + r.overridden_by + ')' : '')));
        tip.appendChild(el('div', null, 'disabled: ' + (r.disabled && r.disabled.length ? r.disabled.join(', ') : 'none')));
        if (r.demands_in_force && r.demands_in_force.length) tip.appendChild(el('div', null, 'demands in force: ' + r.demands_in_force.join(', ')));
      }
      tip.hidden = false;
      var box = holder.getBoundingClientRect();
      tip.style.left = Math.min(x - box.left + 14, box.width - 200) + 'px';
      tip.style.top = (y - box.top + 14) + 'px';
    }
    root.addEventListener('mousemove', function (ev) {
      var code = codeOf(ev.target);
      if (code) showTip(code, ev.clientX, ev.clientY); else tip.hidden = true;
    });
    root.addEventListener('mouseleave', function () { tip.hidden = true; });
    root.addEventListener('click', function (ev) { var code = codeOf(ev.target); if (code) select(code); });
    // Keyboard: one tab stop for the map; arrows move through countries by name.
    var order = w.countries.map(function (c) { return c.code; });
    function pathOf(code) { return shapes.querySelector('path[data-code="' + code + '"]'); }
    function focusCode(code) {
      shapes.querySelectorAll('path[tabindex="0"]').forEach(function (p) { p.setAttribute('tabindex', '-1'); });
      var p = pathOf(code);
      p.setAttribute('tabindex', '0');
      p.focus();
    }
    state.sortByName = function () {
      order.sort(function (a, b) { return nameOf(a).localeCompare(nameOf(b)); });
    };
    shapes.addEventListener('keydown', function (ev) {
      var code = codeOf(ev.target);
      if (!code) return;
      var i = order.indexOf(code);
      if (ev.key === 'ArrowRight' || ev.key === 'ArrowDown') { ev.preventDefault(); focusCode(order[(i + 1) % order.length]); }
      else if (ev.key === 'ArrowLeft' || ev.key === 'ArrowUp') { ev.preventDefault(); focusCode(order[(i - 1 + order.length) % order.length]); }
      else if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); select(code); }
      else if (ev.key === 'Escape') { tip.hidden = true; }
    });
    shapes.addEventListener('focusin', function (ev) {
      var code = codeOf(ev.target);
      if (!code) return;
      var b = ev.target.getBoundingClientRect();
      showTip(code, b.left + b.width / 2, b.top + b.height / 2);
    });
    shapes.addEventListener('focusout', function () { tip.hidden = true; });
    pathOf(order[0]).setAttribute('tabindex', '0');
  }

  function paintMap() {
    var shapes = $('countries');
    var overlay = clear($('overlay'));
    shapes.querySelectorAll('[data-code]').forEach(function (p) {
      var code = p.getAttribute('data-code');
      var r = state.rows[code];
      var status = r && r.status ? r.status : 'nodata';
      var cls = 'c st-' + status + (p.tagName === 'circle' ? ' dot' : '') + (code === state.selected ? ' sel' : '');
      p.setAttribute('class', cls);
      p.setAttribute('data-status', status);
      if (r && r.overridden_by) {
        p.setAttribute('data-overridden', r.overridden_by);
        var o = p.tagName === 'circle'
          ? svg('circle', { cx: p.getAttribute('cx'), cy: p.getAttribute('cy'), r: p.getAttribute('r') })
          : svg('path', { d: p.getAttribute('d') });
        o.setAttribute('class', 'ov');
        o.setAttribute('data-code-overlay', code);
        overlay.appendChild(o);
      } else {
        p.removeAttribute('data-overridden');
      }
      if (p.tagName === 'path') {
        p.setAttribute('aria-label', nameOf(code) + ': ' + status + (r && r.overridden_by ? ', overridden' : ''));
      }
    });
  }

  function refreshMap() {
    return api('GET', 'v1/rules' + atQuery()).then(function (res) {
      if (!res.ok) { $('when-label').textContent = errorText(res); return; }
      var t = res.body;
      state.table = t;
      state.skew = Date.parse(t.now) - Date.now();
      state.rows = {};
      t.jurisdictions.forEach(function (r) { state.rows[r.jurisdiction] = r; });
      $('rules-version').textContent = 'rules ' + t.version.slice(0, 19) + '…';
      $('rules-version').setAttribute('title', t.version);
      $('map').setAttribute('data-at', t.at);
      $('when-next').disabled = !t.next_boundary;
      paintMap();
      if (state.sortByName) state.sortByName();
      // Jurisdictions to pick from, and the ones that need attention.
      var list = clear($('jurisdiction-list'));
      t.jurisdictions.forEach(function (r) {
        list.appendChild(el('option', { value: r.jurisdiction }, r.name || r.jurisdiction));
      });
      var att = clear($('attention'));
      t.jurisdictions.filter(function (r) { return r.status && (r.status !== 'served' || r.overridden_by); })
        .forEach(function (r) {
          att.appendChild(el('li', null, el('button', { type: 'button', 'data-code': r.jurisdiction,
            on: { click: function () { select(r.jurisdiction); } } },
          nameOf(r.jurisdiction) + ': ' + r.status + (r.overridden_by ? ' (override)' : ''))));
        });
      if (!att.firstChild) att.appendChild(el('li', { 'class': 'muted' }, 'every market is served'));
      renderService(t);
      renderShadow(t);
    });
  }

  // ---- the jurisdiction panel ----------------------------------------------------
  var selectSeq = 0;
  function select(code, keepMessage) {
    code = code.trim();
    if (/^[a-z]{2}(-[a-z0-9]{1,3})?$/.test(code)) code = code.toUpperCase();
    state.selected = code;
    paintMap();
    var seq = ++selectSeq;
    return api('GET', 'v1/jurisdictions/' + encodeURIComponent(code) + detailQuery()).then(function (res) {
      if (seq !== selectSeq) return; // a later selection or instant answers instead
      var box = $('detail');
      var message = keepMessage ? $('detail-message') : null;
      var keep = message ? message.cloneNode(true) : null;
      clear(box);
      if (!res.ok) {
        box.appendChild(el('h2', null, code));
        box.appendChild(el('p', { 'class': 'error', role: 'alert' }, errorText(res)));
        if (state.phone || state.declared) {
          box.appendChild(el('button', { type: 'button', id: 'signals-clear', on: { click: clearSignals } }, 'Clear the signals'));
        }
        return;
      }
      renderDetail(box, res.body);
      if (keep) $('detail-message').replaceWith(keep);
    });
  }

  function renderDetail(box, j) {
    var d = j.decision;
    box.appendChild(el('h2', { id: 'detail-title' }, (j.name ? j.name + ' ' : '') + '(' + j.jurisdiction + ')'));
    box.setAttribute('data-code', j.jurisdiction);
    box.setAttribute('data-at', j.at);
    var head = el('p', null);
    if (d) {
      head.appendChild(badge(d.status));
      var off = Object.keys(d.features).filter(function (f) { return !d.features[f]; });
      head.appendChild(document.createTextNode(' features off: ' + (off.length ? off.join(', ') : 'none')));
    } else {
      head.appendChild(el('span', { 'class': 'muted' }, 'A ' + (j.jurisdiction === '*' ? 'global level' : 'group') + ': its rules and overrides apply to the countries on whose chain it is.'));
    }
    box.appendChild(head);
    box.appendChild(el('p', { 'class': 'muted' }, 'chain ' + j.chain.join(' → ') + ' · at ' + when(j.at)));
    if (d) box.appendChild(signalsForm(d));

    if (j.override) {
      var o = j.override;
      box.appendChild(el('h3', null, 'Active override'));
      box.appendChild(el('p', { id: 'detail-override' }, badge('overridden'), ' ',
        describeOverride(o), ' — ', o.reason, ' (', o.actor, ', ', left(o.remaining_seconds), ')'));
      box.appendChild(el('p', { id: 'detail-public-reason', 'class': 'muted' },
        'Public answers say: ', o.public_reason ? '“' + o.public_reason + '”' : 'an operator override (no public reason set)'));
    }
    (j.chain_overrides || []).forEach(function (o) {
      box.appendChild(el('p', null, 'Override on ' + o.jurisdiction + ': ' + describeOverride(o) + ' — ' + o.reason));
    });

    var inForce = j.demands.filter(function (x) { return x.in_force; });
    box.appendChild(el('h3', null, 'Demands in force'));
    box.appendChild(inForce.length ? el('ul', { id: 'detail-demands' }, inForce.map(demandItem)) : el('p', { 'class': 'muted' }, 'none'));

    box.appendChild(el('h3', null, 'Upcoming'));
    var up = j.upcoming.map(function (e) {
      var mine = e.transitions && e.transitions[0];
      return el('li', null, written(e.at, e.at_as_written) + ' · ' + e.kind + ' ' + e.id + ' on ' + e.jurisdiction + ': ' + e.summary,
        e.red_line && e.applies ? el('span', { 'class': 'redline' }, ' RED LINE') : null,
        !e.applies ? el('span', { 'class': 'muted' }, e.kind === 'change' ? ' (shadow: measured only)' : ' (proposed: not in force unless enacted)') : null,
        e.rollout ? el('span', { 'class': 'muted' }, ' rollout ' + e.rollout) : null,
        mine ? el('div', null, '→ ', badge(mine.before), ' to ', badge(mine.after),
          mine.features_off && mine.features_off.length ? ' off: ' + mine.features_off.join(', ') : '',
          mine.features_on && mine.features_on.length ? ' on: ' + mine.features_on.join(', ') : '') : null,
        el('button', { type: 'button', 'class': 'link', on: { click: function () { setAt(e.at, 'event'); } } }, 'show the map then'));
    });
    box.appendChild(up.length ? el('ul', { id: 'detail-upcoming' }, up) : el('p', { 'class': 'muted' }, 'nothing scheduled on this chain'));

    var pending = j.demands.filter(function (x) { return !x.in_force; });
    if (pending.length) {
      box.appendChild(el('h3', null, 'Demands not in force'));
      box.appendChild(el('ul', null, pending.map(demandItem)));
    }
    if (j.explanation) {
      box.appendChild(el('h3', null, 'How it was decided'));
      box.appendChild(el('pre', { id: 'detail-explain' }, j.explanation));
    }
    if (may('operator')) box.appendChild(overrideForm(j));
    else box.appendChild(el('p', { 'class': 'muted', id: 'read-only' }, 'Your token may read only (role ' + (state.me ? state.me.role : '?') + '): overrides are set by operators.'));
  }

  // Explain a request from this market that also carries a phone number or a declared
  // country: each signal's jurisdiction and status, and which one decided.
  function signalsForm(d) {
    var phone = el('input', { id: 'signal-phone', type: 'tel', placeholder: '+14155550123', autocomplete: 'off', value: state.phone || '' });
    var declared = el('input', { id: 'signal-declared', placeholder: 'FR', size: 6, autocomplete: 'off', value: state.declared || '' });
    var form = el('form', { id: 'signals-form' },
      el('h3', null, 'With other signals'),
      el('label', null, 'Phone ', phone), ' ',
      el('label', null, 'Declared country ', declared), ' ',
      el('button', { type: 'submit', id: 'signals-explain' }, 'Explain'), ' ',
      state.phone || state.declared ? el('button', { type: 'button', id: 'signals-clear', on: { click: clearSignals } }, 'Clear') : null);
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      state.phone = phone.value.trim();
      state.declared = declared.value.trim();
      select(state.selected);
    });
    if (d.signals && d.signals.length) {
      form.appendChild(el('ul', { id: 'detail-signals' }, d.signals.map(function (s) {
        return el('li', { 'data-kind': s.kind }, s.kind + ': ' + s.jurisdiction + ' ',
          s.counted ? badge(s.status) : el('span', { 'class': 'muted' }, 'not counted'),
          d.decided_by === s.kind ? el('strong', null, ' ← decides') : null);
      })));
    }
    return form;
  }

  // An instant as the rules wrote it (offset or named zone) beside UTC.
  function written(iso, asWritten) {
    return asWritten ? asWritten + ' (' + when(iso) + ')' : when(iso);
  }

  function demandItem(x) {
    return el('li', null, x.id + ' on ' + x.jurisdiction + ': ' + x.kind + ' (' + x.legal + ', ' + x.response + ')',
      x.red_line ? el('span', { 'class': 'redline' }, ' red line') : null,
      x.law ? ' — ' + x.law : null,
      ' · effective ' + written(x.effective, x.effective_as_written),
      (x.details || []).length ? el('ul', null, x.details.map(function (h) { return el('li', null, h); })) : null,
      x.reference ? [' · ', el('a', { href: x.reference, rel: 'noreferrer noopener', target: '_blank' }, 'reference')] : null);
  }

  function describeOverride(o) {
    var parts = [];
    if (o.status) parts.push('status ' + o.status);
    Object.keys(o.features || {}).forEach(function (f) { parts.push(f + ' ' + (o.features[f] ? 'on' : 'off')); });
    return parts.join(', ') || 'no change';
  }

  function overrideForm(j) {
    var features = (state.table && state.table.features) || [];
    var f = el('form', { 'class': 'override', id: 'override-form', 'aria-labelledby': 'of-title', novalidate: true });
    f.appendChild(el('h3', { id: 'of-title' }, 'Set an override on ' + j.jurisdiction));
    f.appendChild(el('div', { 'class': 'row' },
      el('label', { 'for': 'of-status' }, 'Status'),
      el('select', { id: 'of-status' }, el('option', { value: '' }, '(as the rules say)'),
        STATUSES.map(function (s) { return el('option', { value: s }, s); }))));
    var fs = el('fieldset', null, el('legend', null, 'Features'));
    features.forEach(function (name) {
      fs.appendChild(el('div', { 'class': 'row' },
        el('label', { 'for': 'of-f-' + name }, name),
        el('select', { id: 'of-f-' + name, 'data-feature': name },
          el('option', { value: '' }, '(as the rules say)'), el('option', { value: 'on' }, 'on'), el('option', { value: 'off' }, 'off'))));
    });
    f.appendChild(fs);
    f.appendChild(el('label', { 'for': 'of-reason' }, 'Reason (required)'));
    f.appendChild(el('input', { id: 'of-reason', required: true, maxlength: '500', placeholder: 'court order 2026-114' }));
    f.appendChild(el('label', { 'for': 'of-public-reason' }, 'Public reason (what users are told; the reason and who stay internal)'));
    f.appendChild(el('input', { id: 'of-public-reason', maxlength: '500', placeholder: 'temporarily unavailable in this market' }));
    f.appendChild(el('div', { 'class': 'row' },
      el('label', { 'for': 'of-expiry' }, 'Expires'),
      el('select', { id: 'of-expiry' },
        [['', 'never'], ['10m', 'in 10 minutes'], ['1h', 'in 1 hour'], ['2h', 'in 2 hours'], ['1d', 'in 1 day'], ['7d', 'in 7 days'], ['at', 'at…']]
          .map(function (x) { return el('option', { value: x[0] }, x[1]); })),
      el('label', { 'for': 'of-expires-at', 'class': 'sr-only' }, 'Expires at (your local time)'),
      el('input', { id: 'of-expires-at', type: 'datetime-local', hidden: true })));
    f.appendChild(el('div', { 'class': 'row' },
      el('label', { 'for': 'of-actor' }, 'Who'),
      el('input', { id: 'of-actor', placeholder: 'your name', maxlength: '200' })));
    var policy = state.me && state.me.approvals;
    if (policy && policy.on) {
      f.appendChild(el('p', { 'class': 'muted', id: 'of-policy' }, 'Changes here may need approval by others (four-eyes). A change that only narrows (withdraw, limit, a feature off) may be applied at once as break glass' + (policy.break_glass ? ', flagged in the audit for review' : ' — off on this service') + '; one that widens must be proposed.'));
      if (policy.break_glass) {
        f.appendChild(el('div', { 'class': 'row' },
          el('input', { id: 'of-break-glass', type: 'checkbox' }),
          el('label', { 'for': 'of-break-glass' }, 'Break glass: apply a narrowing change now, without approval')));
      }
    }
    f.appendChild(el('div', { 'class': 'row' },
      el('button', { type: 'submit', id: 'of-submit', 'class': 'primary' }, 'Set override'),
      el('button', { type: 'button', id: 'of-propose' }, 'Propose for approval'),
      j.override ? el('button', { type: 'button', id: 'of-clear', 'class': 'danger' }, 'Clear override') : null,
      j.override ? el('button', { type: 'button', id: 'of-propose-clear' }, 'Propose clearing') : null));
    f.appendChild(el('div', { id: 'detail-message', 'aria-live': 'assertive' }));

    f.querySelector('#of-expiry').addEventListener('change', function () {
      f.querySelector('#of-expires-at').hidden = this.value !== 'at';
    });
    // The form as an override request, or null (with the problem shown).
    function request() {
      var body = { reason: f.querySelector('#of-reason').value.trim() };
      var msg = f.querySelector('#detail-message');
      clear(msg);
      if (!body.reason) {
        msg.appendChild(el('p', { 'class': 'error', role: 'alert' }, 'A reason is required.'));
        f.querySelector('#of-reason').focus();
        return null;
      }
      var st = f.querySelector('#of-status').value;
      if (st) body.status = st;
      var feats = {};
      f.querySelectorAll('select[data-feature]').forEach(function (s) {
        if (s.value) feats[s.getAttribute('data-feature')] = s.value === 'on';
      });
      if (Object.keys(feats).length) body.features = feats;
      var exp = f.querySelector('#of-expiry').value;
      if (exp === 'at') {
        var d = new Date(f.querySelector('#of-expires-at').value);
        if (isNaN(d)) { msg.appendChild(el('p', { 'class': 'error', role: 'alert' }, 'Pick the expiry date and time.')); return null; }
        body.expires_at = d.toISOString();
      } else if (exp) {
        body.ttl = exp;
      }
      var actor = f.querySelector('#of-actor').value.trim();
      if (actor) body.actor = actor;
      var publicReason = f.querySelector('#of-public-reason').value.trim();
      if (publicReason) body.public_reason = publicReason;
      return body;
    }
    function breakGlass() {
      var b = f.querySelector('#of-break-glass');
      return !!(b && b.checked);
    }
    function propose(body) {
      api('POST', 'v1/overrides/' + encodeURIComponent(j.jurisdiction) + '/proposals', body).then(function (res) {
        if (res.ok) {
          var p = res.body.proposal;
          return afterChange(j.jurisdiction, 'Proposed (' + p.id + '): it applies once ' + p.missing_approvals + ' approver(s) other than you approve it.');
        }
        showRefusal(f.querySelector('#detail-message'), res);
      });
    }
    f.querySelector('#of-propose').addEventListener('click', function () {
      var body = request();
      if (body) propose(body);
    });
    var proposeClear = f.querySelector('#of-propose-clear');
    if (proposeClear) {
      proposeClear.addEventListener('click', function () {
        var reason = f.querySelector('#of-reason').value.trim();
        if (!reason) {
          clear(f.querySelector('#detail-message')).appendChild(el('p', { 'class': 'error', role: 'alert' }, 'A reason is required.'));
          return;
        }
        propose({ action: 'clear', reason: reason });
      });
    }
    f.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var body = request();
      if (!body) return;
      var msg = f.querySelector('#detail-message');
      if (breakGlass()) body.break_glass = true;
      api('PUT', 'v1/overrides/' + encodeURIComponent(j.jurisdiction), body).then(function (res) {
        if (res.ok) {
          var dec = res.body.decision;
          return afterChange(j.jurisdiction, 'Override set' + (dec ? ': ' + dec.jurisdiction + ' is now ' + dec.status : '') + '.');
        }
        showRefusal(msg, res);
      });
    });
    var clearBtn = f.querySelector('#of-clear');
    if (clearBtn) {
      clearBtn.addEventListener('click', function () {
        var body = { reason: f.querySelector('#of-reason').value.trim() || 'cleared from the console' };
        var actor = f.querySelector('#of-actor').value.trim();
        if (actor) body.actor = actor;
        if (breakGlass()) body.break_glass = true;
        api('DELETE', 'v1/overrides/' + encodeURIComponent(j.jurisdiction), body).then(function (res) {
          if (res.ok) return afterChange(j.jurisdiction, 'Override on ' + j.jurisdiction + ' cleared.');
          showRefusal(f.querySelector('#detail-message'), res);
        });
      });
    }
    return f;
  }

  function showRefusal(msg, res) {
    clear(msg);
    var e = res.body && res.body.error;
    if (res.status === 409 && e && !e.demand) {
      msg.appendChild(el('div', { 'class': 'refusal', role: 'alert', id: 'refusal', 'data-code': e.code },
        el('strong', null, e.code === 'approval_required' ? 'Needs approval' : 'Refused'),
        el('p', null, e.message)));
    } else if (res.status === 409 && e) {
      var dm = e.demand || {};
      msg.appendChild(el('div', { 'class': 'refusal', role: 'alert', id: 'refusal', 'data-code': e.code },
        el('strong', null, e.code === 'red_line' ? 'Refused: a red line is in force' : 'Refused: a demand is in force'),
        el('p', null, e.message),
        dm.demand ? el('p', { 'class': 'mono' }, [dm.demand, dm.kind, 'on ' + dm.jurisdiction].join(' · ')) : null,
        dm.law ? el('p', null, dm.law) : null,
        dm.reference ? el('p', null, el('a', { href: dm.reference, rel: 'noreferrer noopener', target: '_blank' }, 'reference')) : null));
    } else {
      msg.appendChild(el('p', { 'class': 'error', role: 'alert', id: 'refusal', 'data-code': e ? e.code : '' }, errorText(res)));
    }
  }

  function afterChange(code, text) {
    return Promise.all([refreshMap(), refreshOverrides(), refreshAudit(), refreshProposals()]).then(function () {
      return select(code);
    }).then(function () {
      var m = $('detail-message');
      if (m) { clear(m).appendChild(el('p', { 'class': 'notice', role: 'status', id: 'change-notice' }, text)); }
    });
  }

  // ---- panels --------------------------------------------------------------------
  function table(headers, rows, id) {
    if (!rows.length) return el('p', { 'class': 'muted', id: id }, 'none');
    return el('table', { id: id },
      el('thead', null, el('tr', null, headers.map(function (h) { return el('th', { scope: 'col' }, h); }))),
      el('tbody', null, rows));
  }

  function refreshOverrides() {
    return api('GET', 'v1/overrides').then(function (res) {
      if (!res.ok) return;
      state.overrides = res.body.overrides;
      state.loadedAt = Date.now();
      renderOverrides();
    });
  }
  function restOf(o) {
    var since = (Date.now() - state.loadedAt) / 1000;
    return o.remaining_seconds === undefined ? undefined : o.remaining_seconds - since;
  }
  // Counts the time left down in place, so that focus in the table is kept.
  function tickOverrides() {
    var cells = document.querySelectorAll('#overrides-table td.left');
    state.overrides.forEach(function (o, i) { if (cells[i]) cells[i].textContent = left(restOf(o)); });
  }
  function renderOverrides() {
    var rows = state.overrides.map(function (o) {
      var rest = restOf(o);
      return el('tr', { 'data-code': o.jurisdiction },
        el('td', null, el('button', { type: 'button', on: { click: function () { select(o.jurisdiction); } } }, o.jurisdiction)),
        el('td', null, describeOverride(o)),
        el('td', null, o.reason),
        el('td', null, o.public_reason || '—'),
        el('td', null, o.actor),
        el('td', { 'class': 'left' }, left(rest)));
    });
    var box = clear($('overrides'));
    box.appendChild(table(['jurisdiction', 'override', 'reason', 'public reason', 'by', 'time left'], rows, 'overrides-table'));
  }

  function refreshAudit() {
    return api('GET', 'v1/audit?limit=50').then(function (res) {
      if (!res.ok) { clear($('audit')).appendChild(el('p', { 'class': 'error' }, errorText(res))); return; }
      var rows = res.body.entries.map(function (a) {
        var what = [];
        if (a.status) what.push('status ' + a.status);
        Object.keys(a.features || {}).forEach(function (f) { what.push(f + ' ' + (a.features[f] ? 'on' : 'off')); });
        if (a.expires_at) what.push('until ' + when(a.expires_at));
        if (a.public_reason) what.push('public: “' + a.public_reason + '”');
        if (a.proposal) what.push('proposal ' + a.proposal);
        if (a.approved_by && a.approved_by.length) what.push('proposed by ' + a.proposed_by + ', approved by ' + a.approved_by.join(', '));
        var action = el('td', null, a.action);
        if (a.break_glass) {
          action.appendChild(document.createTextNode(' '));
          action.appendChild(el('span', { 'class': 'badge break-glass', title: 'applied without approval because it only narrows: to review' }, 'break glass'));
        }
        return el('tr', { 'class': a.break_glass ? 'break-glass' : null }, el('td', null, when(a.at)), action, el('td', null, a.jurisdiction),
          el('td', null, what.join(', ')), el('td', null, a.reason), el('td', null, a.actor));
      });
      clear($('audit')).appendChild(table(['when', 'action', 'jurisdiction', 'what', 'reason', 'by'], rows, 'audit-table'));
    });
  }

  function refreshProposals() {
    return api('GET', 'v1/proposals').then(function (res) {
      var box = clear($('proposals'));
      if (!res.ok) { box.appendChild(el('p', { 'class': 'error' }, errorText(res))); return; }
      state.proposals = res.body.proposals;
      var msg = el('div', { id: 'proposal-message', 'aria-live': 'assertive' });
      var rows = state.proposals.map(function (p) {
        var change = p.action === 'clear' ? 'clear the override' : describeOverride(p.override);
        var approvals = (p.approvals || []).map(function (a) { return a.by; });
        var acts = el('td', null);
        if (may('approver')) {
          acts.appendChild(el('button', { type: 'button', 'class': 'primary', 'data-act': 'approve', on: { click: function () { act(p, 'approve', msg); } } }, 'Approve'));
          acts.appendChild(document.createTextNode(' '));
          acts.appendChild(el('button', { type: 'button', 'class': 'danger', 'data-act': 'reject', on: { click: function () { act(p, 'reject', msg); } } }, 'Reject'));
        }
        return el('tr', { 'data-proposal': p.id, 'data-code': p.jurisdiction },
          el('td', null, el('button', { type: 'button', on: { click: function () { select(p.jurisdiction); } } }, p.jurisdiction)),
          el('td', null, change + (p.narrowing ? ' (narrows)' : ' (widens)')),
          el('td', null, p.reason || (p.override && p.override.reason) || ''),
          el('td', null, p.proposed_by),
          el('td', null, approvals.length + ' of ' + p.required + (approvals.length ? ' (' + approvals.join(', ') + ')' : '')),
          el('td', null, when(p.expires_at)),
          acts);
      });
      box.appendChild(table(['jurisdiction', 'change', 'reason', 'proposed by', 'approvals', 'expires', ''], rows, 'proposals-table'));
      box.appendChild(msg);
    });
  }
  function act(p, what, msg) {
    api('POST', 'v1/proposals/' + encodeURIComponent(p.id) + '/' + what, {}).then(function (res) {
      if (!res.ok) {
        showRefusal(msg, res);
        return;
      }
      var text = what === 'reject' ? 'Rejected.' : (res.body.applied ? 'Approved and applied (version ' + res.body.applied.version + ').' : 'Approved; ' + res.body.proposal.missing_approvals + ' more approval(s) needed.');
      return Promise.all([refreshMap(), refreshOverrides(), refreshAudit(), refreshProposals()]).then(function () {
        clear($('proposal-message')).appendChild(el('p', { 'class': 'notice', role: 'status', id: 'proposal-notice' }, text));
      });
    });
  }

  function renderShadow(t) {
    // Every shadow change in the rules, with the decisions it would have changed
    // (counted on live traffic by this instance, by transition).
    var counts = {};
    t.shadow.forEach(function (s) { (counts[s.change] = counts[s.change] || []).push(s); });
    var rows = t.shadow_changes.map(function (c) {
      var seen = counts[c.id] || [];
      var total = seen.reduce(function (n, s) { return n + s.count; }, 0);
      return el('tr', { 'data-change': c.id },
        el('td', { 'class': 'mono' }, c.id),
        el('td', null, c.jurisdiction),
        el('td', null, c.effect + (c.in_force ? '' : ' (from ' + when(c.at) + ')')),
        el('td', { 'class': 'count' }, String(total)),
        el('td', null, seen.map(function (s) { return s.from + ' → ' + s.to + ': ' + s.count; }).join(', ')));
    });
    var box = clear($('shadow'));
    box.appendChild(el('p', { 'class': 'muted' }, 'Changes in shadow mode are evaluated beside the real decision and only counted: the decisions each would have changed on live traffic since this instance started.'));
    box.appendChild(table(['change', 'on', 'would', 'decisions', 'by transition'], rows, 'shadow-table'));
  }

  function renderService(t) {
    var r = t.reload, g = t.geoip, s = t.store;
    var facts = [
      ['rules version', el('span', { 'class': 'mono' }, t.version)],
      ['rule files', String(t.files.length)],
      ['last rules reload', [r.result + ' (' + r.trigger + ') at ' + when(r.at)].concat(r.errors ? [el('ul', { 'class': 'error' }, r.errors.map(function (e) { return el('li', null, e); }))] : [])],
      ['next scheduled change', t.next_boundary ? when(t.next_boundary) : 'none'],
      ['GeoIP database', g.database_type + ' · ' + g.source],
      ['GeoIP built', when(new Date(g.build_epoch * 1000).toISOString()) + ' (' + g.age_days + ' days old' + (g.stale ? ', STALE' : '') + ')'],
      ['last GeoIP load', g.last_reload.result + ' at ' + when(g.last_reload.at) + (g.last_reload.error ? ': ' + g.last_reload.error : '')],
      ['override store', s.backend + (s.connected === false ? ' (disconnected)' : '') + ' · version ' + s.version + ' · ' + s.overrides + ' override(s)']
    ];
    var dl = el('dl', { 'class': 'facts', id: 'service-facts' });
    facts.forEach(function (f) { dl.appendChild(el('dt', null, f[0])); dl.appendChild(el('dd', null, f[1])); });
    var box = clear($('service'));
    box.appendChild(dl);
    var msg = el('p', { id: 'reload-message', 'aria-live': 'polite' });
    if (may('operator')) box.appendChild(el('p', null, el('button', { type: 'button', id: 'reload', on: { click: function () {
      api('POST', 'v1/reload').then(function (res) {
        msg.textContent = res.ok ? 'Rules ' + res.body.result + '.' : errorText(res);
        msg.className = res.ok ? 'notice' : 'error';
        return refreshMap();
      });
    } } }, 'Reload rules and GeoIP')));
    box.appendChild(msg);
  }

  // ---- start ---------------------------------------------------------------------
  if (!TOKEN) { logout(''); return; }
  layout();
  api('GET', 'v1/whoami').then(function (res) {
    if (!res.ok) throw new Error(errorText(res));
    state.me = res.body;
    $('whoami').textContent = (state.me.name || state.me.identity) + ' · ' + state.me.role + (state.me.scope.join(',') === '*' ? '' : ' · ' + state.me.scope.join(','));
    $('app').setAttribute('data-role', state.me.role);
    return api('GET', 'console/world.json');
  }).then(function (res) {
    if (!res.ok) throw new Error(errorText(res));
    state.world = res.body;
    drawMap();
    return Promise.all([refreshMap(), refreshOverrides(), refreshAudit(), refreshProposals()]);
  }).then(function () {
    $('app').setAttribute('data-ready', 'true');
  }).catch(function (e) {
    if (e.message !== 'unauthorized') $('app').appendChild(el('p', { 'class': 'error', role: 'alert' }, 'The console failed to load: ' + e.message));
  });
  if (window.__marketgateTimer) clearInterval(window.__marketgateTimer);
  var ticks = 0;
  window.__marketgateTimer = setInterval(function () {
    if (!TOKEN) return;
    ticks++;
    tickOverrides();
    if (ticks % 15 === 0) { refreshOverrides(); refreshAudit(); refreshProposals(); if (!state.at) refreshMap(); }
  }, 1000);
})();
