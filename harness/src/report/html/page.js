// connect-harness HTML report: renders the JSON in #data with DOM calls and textContent only (never innerHTML),
// so whatever a proxy sent is shown as text. The view state (filters, the opened result) is kept in the URL
// fragment: #v=fail,warn&l=must&t=tls&q=text&open=COLUMN~ID
'use strict';
(function () {
  const DATA = JSON.parse(document.getElementById('data').textContent);
  const VERDICTS = ['pass', 'fail', 'warn', 'observed', 'inconclusive', 'setup', 'skip', 'error'];
  // Filter keys: the verdicts, and results the --expect file lists that passed (they fail the run).
  const FILTERS = VERDICTS.concat(['unexpected']);
  const LEVELS = ['must', 'should', 'may', 'observed'];

  function el(tag, attrs) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) {
      const v = attrs[k];
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = String(v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (let i = 2; i < arguments.length; i++) {
      const kid = arguments[i];
      if (kid === undefined || kid === null) continue;
      if (Array.isArray(kid)) kid.forEach(function (k) { if (k) e.appendChild(k); });
      else if (kid instanceof Node) e.appendChild(kid);
      else e.appendChild(document.createTextNode(typeof kid === 'object' ? JSON.stringify(kid) : String(kid)));
    }
    return e;
  }

  // Columns: one per report and transport it ran.
  const cols = [];
  DATA.reports.forEach(function (r, ri) {
    let ts = Array.isArray(r.transports) && r.transports.length ? r.transports : [];
    if (!ts.length) ts = Array.from(new Set(r.results.map(function (x) { return x.transport; })));
    ts.forEach(function (t) {
      cols.push({ ri: ri, t: t, label: ts.length > 1 ? r.label + ' (' + t + ')' : r.label, report: r });
    });
  });
  // id -> { info: first result seen, cells: Map(column index -> result) }
  const byId = new Map();
  cols.forEach(function (c, ci) {
    c.report.results.forEach(function (x) {
      if (x.transport !== c.t) return;
      if (!byId.has(x.id)) byId.set(x.id, { info: x, cells: new Map() });
      byId.get(x.id).cells.set(ci, x);
    });
  });

  const state = { v: new Set(FILTERS), l: '', t: '', q: '', open: '' };
  function readHash() {
    const h = location.hash.replace(/^#/, '');
    h.split('&').forEach(function (part) {
      const i = part.indexOf('=');
      if (i < 0) return;
      const k = part.slice(0, i);
      let v;
      try { v = decodeURIComponent(part.slice(i + 1)); } catch (e) { return; }
      if (k === 'v') state.v = new Set(v.split(',').filter(function (x) { return FILTERS.indexOf(x) >= 0; }));
      else if (k === 'l' && LEVELS.indexOf(v) >= 0) state.l = v;
      else if (k === 't' && cols.some(function (c) { return c.t === v; })) state.t = v;
      else if (k === 'q') state.q = v;
      else if (k === 'open') state.open = v;
    });
  }
  function writeHash() {
    const parts = [];
    if (state.v.size !== FILTERS.length) parts.push('v=' + FILTERS.filter(function (v) { return state.v.has(v); }).join(','));
    if (state.l) parts.push('l=' + state.l);
    if (state.t) parts.push('t=' + encodeURIComponent(state.t));
    if (state.q) parts.push('q=' + encodeURIComponent(state.q));
    if (state.open) parts.push('open=' + encodeURIComponent(state.open));
    try { history.replaceState(null, '', parts.length ? '#' + parts.join('&') : location.pathname + location.search); } catch (e) { /* file: URLs in some browsers */ }
  }

  function badge(x, ci) {
    if (!x) return el('span', { class: 'v v-none', text: '—' });
    let cls = 'v v-' + x.verdict;
    if (x.deviation) cls += x.deviation.unexpected_pass ? ' unexpected' : ' known';
    const status = x.observed && x.observed.head && x.observed.head.status;
    const b = el('button', { class: cls, type: 'button', 'data-col': ci, 'data-verdict': x.verdict,
      title: x.reason || x.verdict, text: x.verdict + (status && x.verdict !== 'pass' && x.verdict !== 'skip' ? ' ' + status : '') });
    b.addEventListener('click', function () { openResult(ci, x.id); });
    return b;
  }

  // Header and summary.
  document.body.appendChild(el('h1', { text: 'connect-harness report' }));
  document.body.appendChild(el('p', { class: 'meta', text: DATA.reports.length + ' report(s), the newest started ' +
    DATA.newest + '; page by connect-harness ' + DATA.harness_version + '. † a known deviation listed in the expectations file, ‡ listed but passed.' }));
  const sumTable = el('table', { id: 'summary' },
    el('tr', null, el('th', { text: 'report' }), el('th', { text: 'target' }), el('th', { text: 'transport' }),
      VERDICTS.map(function (v) { return el('th', { text: v }); }), el('th', { text: 'known deviations' }),
      el('th', { text: 'unexpected passes' }),
      el('th', { text: 'started' })));
  cols.forEach(function (c, ci) {
    const rs = c.report.results.filter(function (x) { return x.transport === c.t; });
    const n = function (v) { return rs.filter(function (x) { return x.verdict === v; }).length; };
    sumTable.appendChild(el('tr', { 'data-col': ci }, el('td', { text: c.report.label }), el('td', { text: c.report.target || '' }),
      el('td', { text: c.t }), VERDICTS.map(function (v) { return el('td', { class: 'n', text: n(v) }); }),
      el('td', { class: 'n', text: rs.filter(function (x) { return x.deviation && !x.deviation.unexpected_pass; }).length }),
      el('td', { class: 'n', text: rs.filter(function (x) { return x.deviation && x.deviation.unexpected_pass; }).length }),
      el('td', { text: c.report.start_time || '' })));
  });
  document.body.appendChild(el('h2', { text: 'Summary' }));
  document.body.appendChild(sumTable);
  DATA.reports.forEach(function (r) {
    if (!Array.isArray(r.stale_expectations) || !r.stale_expectations.length) return;
    document.body.appendChild(el('h3', { class: 'stale', text: 'Stale expectations (they fail the run): ' + r.label }));
    document.body.appendChild(el('ul', null, r.stale_expectations.map(function (st) {
      return el('li', { text: st.id + (st.transport ? ' [' + st.transport + ']' : '') + ' lists results that are only ' + (st.now || []).join(', ') + ' in this run (not failures)' });
    })));
  });
  DATA.reports.forEach(function (r) {
    if (!Array.isArray(r.findings) || !r.findings.length) return;
    document.body.appendChild(el('h3', { text: 'Findings beyond single scenarios: ' + r.label }));
    document.body.appendChild(el('pre', { text: JSON.stringify(r.findings, null, 2) }));
  });

  // Filters.
  const shown = el('span', { id: 'shown' });
  const q = el('input', { type: 'search', id: 'q', placeholder: 'text in id, title, requirement, reason' });
  const lv = el('select', { id: 'level' }, el('option', { value: '', text: 'every level' }),
    LEVELS.map(function (l) { return el('option', { value: l, text: l }); }));
  const tsel = el('select', { id: 'transport' }, el('option', { value: '', text: 'every transport' }),
    Array.from(new Set(cols.map(function (c) { return c.t; }))).map(function (t) { return el('option', { value: t, text: t }); }));
  const boxes = FILTERS.map(function (v) {
    const b = el('input', { type: 'checkbox', id: 'f-' + v, 'data-verdict': v });
    b.addEventListener('change', function () { if (b.checked) state.v.add(v); else state.v.delete(v); update(); });
    const label = v === 'unexpected' ? el('span', { class: 'v v-fail unexpected', text: 'unexpected pass' }) : el('span', { class: 'v v-' + v, text: v });
    return el('label', null, b, ' ', label);
  });
  q.addEventListener('input', function () { state.q = q.value; update(); });
  lv.addEventListener('change', function () { state.l = lv.value; update(); });
  tsel.addEventListener('change', function () { state.t = tsel.value; update(); });
  document.body.appendChild(el('div', { id: 'filters' }, boxes, el('br'), q, ' ', lv, ' ', tsel, ' ', shown));

  // The TLS × SNI × Host × target grid of every column that ran the matrix scenarios.
  const gridCells = [];
  const grids = [];
  cols.forEach(function (c, ci) {
    const ids = Array.from(byId.keys()).filter(function (id) { return id.indexOf('matrix/') === 0 && byId.get(id).cells.has(ci); });
    if (!ids.length) return;
    const rows = [], targets = [];
    ids.forEach(function (id) {
      const p = id.split('/');
      if (p.length !== 4) return;
      const row = p[1] + ' · ' + p[2];
      if (rows.indexOf(row) < 0) rows.push(row);
      if (targets.indexOf(p[3]) < 0) targets.push(p[3]);
    });
    const t = el('table', { class: 'grid' }, el('tr', null, el('th', { text: 'TLS/SNI · Host' }),
      targets.map(function (x) { return el('th', { text: x }); })));
    rows.forEach(function (row) {
      const tr = el('tr', null, el('th', { text: row }));
      targets.forEach(function (x) {
        const id = 'matrix/' + row.split(' · ').join('/') + '/' + x;
        const r = byId.has(id) ? byId.get(id).cells.get(ci) : null;
        const b = badge(r, ci);
        if (r) gridCells.push(b);
        tr.appendChild(el('td', null, b));
      });
      t.appendChild(tr);
    });
    const d = el('details', { open: cols.length <= 2 || grids.length === 0, class: 'matrix', 'data-col': ci }, el('summary', { text: c.label }), t);
    grids.push({ ci: ci, d: d });
  });
  if (grids.length) {
    document.body.appendChild(el('h2', { id: 'matrix', text: 'TLS × SNI × Host × target matrix' }));
    grids.forEach(function (g) { document.body.appendChild(g.d); });
  }

  // Every result, grouped by RFC section.
  const sections = new Map();
  Array.from(byId.keys()).sort().forEach(function (id) {
    const s = byId.get(id).info.section || '(no section)';
    if (!sections.has(s)) sections.set(s, []);
    sections.get(s).push(id);
  });
  const rows = [];
  const sectionEls = [];
  document.body.appendChild(el('h2', { id: 'results', text: 'Results by RFC section' }));
  Array.from(sections.keys()).sort(function (a, b) { return a.localeCompare(b, 'en', { numeric: true }); }).forEach(function (s) {
    const head = el('tr', null, el('th', { text: 'scenario' }), el('th', { text: 'level' }),
      cols.map(function (c, ci) { return el('th', { 'data-col': ci, text: c.label }); }));
    const table = el('table', { class: 'section' }, head);
    const h = el('h3', { text: s });
    const group = el('div', { class: 'group' }, h, table);
    const mine = [];
    sections.get(s).forEach(function (id) {
      const e = byId.get(id);
      const info = e.info;
      const texts = [id, info.title, info.requirement, info.section];
      const cells = [];
      const tr = el('tr', { class: 'scenario', 'data-id': id },
        el('td', null, el('span', { class: 'id', text: id }), el('br'), el('span', { class: 'title', text: info.title || '' }),
          info.requirement ? el('blockquote', { class: 'req', text: info.requirement }) : null),
        el('td', { text: info.level || '' }),
        cols.map(function (c, ci) {
          const x = e.cells.get(ci);
          if (x) {
            texts.push(x.reason);
            cells.push({ ci: ci, verdict: x.verdict, unexpected: !!(x.deviation && x.deviation.unexpected_pass) });
          }
          return el('td', { 'data-col': ci }, badge(x, ci));
        }));
      table.appendChild(tr);
      const row = { tr: tr, level: info.level, text: texts.filter(Boolean).join('\n').toLowerCase(), cells: cells };
      rows.push(row);
      mine.push(row);
    });
    sectionEls.push({ el: group, rows: mine });
    document.body.appendChild(group);
  });

  const nothing = el('p', { id: 'nothing', text: 'No scenario matches these filters.' });
  document.body.appendChild(nothing);
  const detail = el('section', { id: 'detail', hidden: true });
  document.body.appendChild(detail);
  document.addEventListener('keydown', function (e) { if (e.key === 'Escape') closeResult(); });

  function update() {
    const query = state.q.toLowerCase();
    let n = 0;
    rows.forEach(function (r) {
      const visible = r.cells.filter(function (c) { return !state.t || cols[c.ci].t === state.t; });
      const ok = (!query || r.text.indexOf(query) >= 0) && (!state.l || r.level === state.l) &&
        visible.some(function (c) { return state.v.has(c.verdict) || (c.unexpected && state.v.has('unexpected')); });
      r.tr.hidden = !ok;
      if (ok) n++;
    });
    sectionEls.forEach(function (s) { s.el.hidden = s.rows.every(function (r) { return r.tr.hidden; }); });
    document.querySelectorAll('[data-col]').forEach(function (e) {
      if (e.closest('#detail')) return;
      const c = cols[Number(e.getAttribute('data-col'))];
      if (e.tagName === 'BUTTON') return;
      e.hidden = !!state.t && c && c.t !== state.t;
    });
    gridCells.forEach(function (b) { b.style.opacity = state.v.has(b.getAttribute('data-verdict')) ? '' : '0.2'; });
    shown.textContent = n + ' of ' + rows.length + ' scenarios shown';
    nothing.hidden = n > 0;
    FILTERS.forEach(function (v) { document.getElementById('f-' + v).checked = state.v.has(v); });
    q.value = state.q; lv.value = state.l; tsel.value = state.t;
    writeHash();
  }

  function field(name, value) {
    return el('tr', null, el('th', { text: name }), el('td', null, value));
  }
  function pre(v) { return el('pre', { text: typeof v === 'string' ? v : JSON.stringify(v, null, 2) }); }
  function table(headers, items, row) {
    return el('table', null, el('tr', null, headers.map(function (h) { return el('th', { text: h }); })),
      items.map(function (it) { return el('tr', null, row(it).map(function (v) { return el('td', null, v); })); }));
  }

  // A response head as the proxy sent it (status line, fields); anything else as JSON.
  function observedText(o) {
    const h = o.head;
    if (o.kind !== 'response' || !h || !Array.isArray(h.fields)) return o;
    const lines = [h.version + ' ' + h.status + (h.reason !== undefined ? ' ' + h.reason : '')];
    h.fields.forEach(function (f) { lines.push(Array.isArray(f) ? f[0] + ': ' + f[1] : JSON.stringify(f)); });
    const rest = Object.assign({}, o);
    delete rest.head;
    delete rest.kind;
    return lines.join('\n') + '\n' + (Object.keys(rest).length ? '\n' + JSON.stringify(rest, null, 2) : '');
  }

  function openResult(ci, id) {
    const e = byId.get(id);
    const x = e && e.cells.get(ci);
    if (!x) return;
    // A compact report keeps the evidence of results worth reading only: say so instead of showing nothing.
    const compact = !!cols[ci].report.compact;
    const notKept = function (what) { return el('p', { class: 'meta', text: what + ': not kept in this compact report (run without --compact for every result\'s evidence).' }); };
    state.open = ci + '~' + id;
    const c = cols[ci];
    const close = el('button', { class: 'close', type: 'button', text: 'close (Esc)' });
    close.addEventListener('click', closeResult);
    const kids = [close, el('h2', { text: x.title || x.id }),
      el('table', null,
        field('scenario', el('code', { text: x.id })),
        field('report', c.label + ' — ' + (c.report.target || '')),
        field('transport', x.transport),
        field('verdict', badge(x, ci)),
        field('level', x.level || ''),
        field('section', x.section || ''),
        x.reason ? field('why', x.reason) : null,
        x.deviation ? field(x.deviation.unexpected_pass ? 'listed, but passed' : 'known deviation', x.deviation.reason) : null,
        field('source', x.source || ''),
        x.catalog && x.catalog.length ? field('catalog', x.catalog.join(', ')) : null,
        field('duration', (x.duration_ms || 0) + ' ms'))];
    if (x.requirement) kids.push(el('h3', { text: 'Requirement' }), el('blockquote', { text: x.requirement }));
    if (x.acceptable && x.acceptable.length) {
      kids.push(el('h3', { text: 'Acceptable outcomes' }), el('ul', null, x.acceptable.map(function (a) { return el('li', { text: a }); })));
    } else if (compact) {
      kids.push(notKept('Acceptable outcomes, observed response and steps'));
    }
    if (x.observed) kids.push(el('h3', { text: 'Observed' }), pre(observedText(x.observed)));
    if (x.steps && x.steps.length) {
      kids.push(el('h3', { text: 'Steps' }), table(['#', 'kind', 'result', 'level', 'detail'], x.steps, function (s) {
        return [String(s.index), s.kind, s.result, s.level, s.detail || ''];
      }));
    }
    kids.push(el('h3', { text: 'What the origins saw' }));
    if (x.origins && x.origins.length) {
      kids.push(table(['origin', 'peer', 'at ms', 'bytes in', 'bytes out', 'ended', 'first bytes', 'TLS'], x.origins, function (o) {
        const tls = o.sni || (o.alpn_offered && o.alpn_offered.length) ? 'SNI ' + (o.sni || '-') + ', ALPN ' + (o.alpn_offered || []).join(',') : '';
        return [o.origin, o.peer, String(o.at_ms), String(o.bytes_in), String(o.bytes_out),
          o.end === undefined ? '' : typeof o.end === 'object' ? JSON.stringify(o.end) : String(o.end), pre(o.first_bytes || ''), tls];
      }));
    } else if (compact && !x.observed) {
      kids.push(notKept('Origin connections'));
    } else {
      kids.push(el('p', { text: 'No origin accepted a connection during this scenario.' }));
    }
    if (x.tls) kids.push(el('h3', { text: 'TLS to the proxy' }), pre(x.tls));
    kids.push(el('h3', { text: 'Transcript' }));
    if (x.transcript) {
      const t = x.transcript;
      kids.push(el('p', { class: 'meta', text: t.bytes_sent + ' bytes sent, ' + t.bytes_received + ' received' + (t.truncated ? ' (cut short)' : '') }));
      kids.push(el('table', { class: 'transcript' }, t.entries.map(function (en) {
        const arrow = en.dir === 'sent' ? '→ ' + en.len : en.dir === 'received' ? '← ' + en.len : '·';
        return el('tr', { class: 'dir-' + en.dir }, el('td', { text: en.t_ms + ' ms ' + arrow }), el('td', null, pre(en.data)));
      })));
    } else {
      kids.push(el('p', { text: 'No transcript kept for this result (run with --transcripts all to keep every one).' }));
    }
    if (x.proxy_log && x.proxy_log.length) {
      kids.push(el('h3', { text: 'Proxy log' }));
      x.proxy_log.forEach(function (l) {
        kids.push(el('p', { class: 'meta', text: l.file + (l.truncated ? ' (cut short)' : '') + (l.approximate ? ' (approximate)' : '') }), pre(l.lines.join('\n')));
      });
    }
    while (detail.firstChild) detail.removeChild(detail.firstChild);
    kids.forEach(function (k) { if (k) detail.appendChild(k); });
    detail.setAttribute('data-open', state.open);
    detail.hidden = false;
    detail.scrollTop = 0;
    writeHash();
  }
  function closeResult() {
    detail.hidden = true;
    detail.removeAttribute('data-open');
    state.open = '';
    writeHash();
  }

  function applyHash() {
    readHash();
    update();
    const i = state.open.indexOf('~');
    if (i > 0) openResult(Number(state.open.slice(0, i)), state.open.slice(i + 1));
    else if (!detail.hidden) closeResult();
  }
  window.addEventListener('hashchange', function () {
    state.v = new Set(VERDICTS); state.l = ''; state.t = ''; state.q = ''; state.open = '';
    applyHash();
  });
  applyHash();
  document.documentElement.setAttribute('data-rendered', String(rows.length));
})();
