// Orders page: look up an order by id and watch the ingestion pipeline.
// Every value that comes from the server is put into the page with textContent
// (never parsed as HTML), so an order can never inject markup or script.
(function () {
  'use strict';

  var UID_RE = /^[A-Za-z0-9_-]{1,64}$/;
  var POLL_MS = 2000;

  var $ = function (id) { return document.getElementById(id); };
  var form = $('search');
  var input = $('q');
  var meta = $('meta');
  var message = $('message');
  var orderEl = $('order');
  var intro = $('intro');

  // el builds an element: el('td', {className: 'num'}, 'text', childNode, ...).
  function el(tag, props) {
    var node = document.createElement(tag);
    if (props) {
      Object.keys(props).forEach(function (k) { node[k] = props[k]; });
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined || c === false) continue;
      node.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function str(v) {
    return v === null || v === undefined ? '' : String(v);
  }

  // ---- formatting -------------------------------------------------------

  var fractionCache = {};
  function fractionDigits(currency) {
    if (!(currency in fractionCache)) {
      var d = 2;
      try {
        d = new Intl.NumberFormat('en', { style: 'currency', currency: currency })
          .resolvedOptions().maximumFractionDigits;
      } catch (e) { d = 2; }
      fractionCache[currency] = d;
    }
    return fractionCache[currency];
  }

  // money formats an amount in minor units (e.g. cents) of currency.
  function money(minor, currency) {
    if (typeof minor !== 'number' || !isFinite(minor)) return str(minor);
    var cur = str(currency);
    var digits = fractionDigits(cur);
    var value = minor / Math.pow(10, digits);
    try {
      return new Intl.NumberFormat(undefined, { style: 'currency', currency: cur }).format(value);
    } catch (e) {
      return value.toFixed(digits) + (cur ? ' ' + cur : '');
    }
  }

  function dateTime(d) {
    if (!(d instanceof Date) || isNaN(d.getTime())) return '';
    return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  }

  function number(n) {
    if (typeof n !== 'number' || !isFinite(n)) return str(n);
    return n.toLocaleString();
  }

  // ---- order lookup -----------------------------------------------------

  var inflight = null;

  function showMessage(kind, title, detail) {
    clear(message);
    message.className = 'message ' + kind;
    message.appendChild(el('strong', null, title));
    if (detail) message.appendChild(el('p', null, detail));
    message.hidden = false;
    orderEl.hidden = true;
    intro.hidden = true;
  }

  function showMeta(ms, cache, status) {
    clear(meta);
    meta.appendChild(el('span', { className: 'timing' }, ms.toFixed(1) + ' ms'));
    if (cache === 'hit' || cache === 'miss') {
      meta.appendChild(el('span', { className: 'badge cache-' + cache, title: 'X-Cache: ' + cache },
        cache === 'hit' ? 'cache hit' : 'cache miss'));
    }
    if (status) meta.appendChild(el('span', { className: 'http' }, 'HTTP ' + status));
    meta.hidden = false;
  }

  function lookup(rawID, push) {
    var id = rawID.trim();
    if (push) {
      var url = id ? '?id=' + encodeURIComponent(id) : './';
      history.pushState({ id: id }, '', url);
    }
    input.value = id;
    if (!id) {
      meta.hidden = true; message.hidden = true; orderEl.hidden = true; intro.hidden = false;
      document.title = 'Orders';
      return;
    }
    if (!UID_RE.test(id)) {
      meta.hidden = true;
      showMessage('warn', 'That does not look like an order id.',
        'An order id has 1 to 64 letters, digits, "-" or "_".');
      return;
    }
    if (inflight) inflight.abort();
    var ctrl = typeof AbortController === 'function' ? new AbortController() : null;
    inflight = ctrl;
    document.body.classList.add('loading');
    var t0 = performance.now();
    fetch('api/v1/orders/' + encodeURIComponent(id), {
      headers: { Accept: 'application/json' },
      cache: 'no-cache',
      signal: ctrl ? ctrl.signal : undefined
    }).then(function (resp) {
      return resp.text().then(function (text) {
        return { resp: resp, text: text, ms: performance.now() - t0 };
      });
    }).then(function (r) {
      if (inflight !== ctrl) return;
      showMeta(r.ms, r.resp.headers.get('X-Cache'), r.resp.status);
      var body = null;
      try { body = JSON.parse(r.text); } catch (e) { body = null; }
      if (r.resp.status === 200 && body && typeof body === 'object') {
        renderOrder(body);
        document.title = 'Order ' + str(body.order_uid);
      } else if (r.resp.status === 404) {
        showMessage('info', 'No order with id \u201c' + id + '\u201d.',
          'Check the id for typos. A new order shows up here as soon as it has been ingested.');
        document.title = 'Order not found';
      } else if (r.resp.status === 400) {
        showMessage('warn', 'That does not look like an order id.', body && body.error ? str(body.error) : '');
      } else {
        showMessage('error', 'The service could not answer (HTTP ' + r.resp.status + ').',
          body && body.error ? str(body.error) : 'Please try again in a moment.');
      }
    }).catch(function (err) {
      if (err && err.name === 'AbortError') return;
      meta.hidden = true;
      showMessage('error', 'The service is not reachable.', str(err && err.message));
    }).then(function () {
      if (inflight === ctrl) {
        inflight = null;
        document.body.classList.remove('loading');
      }
    });
  }

  // field adds a label/value pair to a definition list.
  function field(dl, label, value, cls) {
    if (value === '' || value === null || value === undefined) return;
    dl.appendChild(el('dt', null, label));
    dl.appendChild(el('dd', cls ? { className: cls } : null, value));
  }

  function card(title, cls) {
    var dl = el('dl', { className: 'fields' });
    var section = el('section', { className: 'card ' + (cls || '') }, el('h3', null, title), dl);
    return { section: section, dl: dl };
  }

  function renderOrder(o) {
    clear(orderEl);
    var d = o.delivery || {};
    var p = o.payment || {};
    var items = Array.isArray(o.items) ? o.items : [];
    var cur = str(p.currency);

    // header
    var created = new Date(o.date_created);
    var head = el('header', { className: 'order-head' },
      el('div', null,
        el('p', { className: 'eyebrow' }, 'Order'),
        el('h2', { className: 'uid' }, str(o.order_uid)),
        el('p', { className: 'sub' },
          el('span', { className: 'chip', title: 'Track number' }, str(o.track_number)),
          o.entry ? el('span', { className: 'chip muted', title: 'Entry' }, str(o.entry)) : null,
          o.delivery_service ? el('span', { className: 'chip muted', title: 'Delivery service' }, str(o.delivery_service)) : null)),
      el('div', { className: 'head-right' },
        el('p', { className: 'amount' }, money(p.amount, cur)),
        el('p', { className: 'when', title: str(o.date_created) }, dateTime(created) || str(o.date_created))));
    orderEl.appendChild(head);

    var grid = el('div', { className: 'cards' });

    var cust = card('Customer', 'customer');
    field(cust.dl, 'Customer id', str(o.customer_id));
    field(cust.dl, 'Locale', str(o.locale));
    field(cust.dl, 'Shard', str(o.shardkey) + (o.oof_shard ? ' / ' + str(o.oof_shard) : ''));
    field(cust.dl, 'SM id', str(o.sm_id));
    if (o.internal_signature) field(cust.dl, 'Signature', str(o.internal_signature));
    grid.appendChild(cust.section);

    var del = card('Delivery', 'delivery');
    field(del.dl, 'Name', str(d.name), 'strong');
    field(del.dl, 'Phone', str(d.phone));
    field(del.dl, 'Email', str(d.email));
    field(del.dl, 'Address', str(d.address));
    field(del.dl, 'City', [str(d.zip), str(d.city)].filter(Boolean).join(' '));
    field(del.dl, 'Region', str(d.region));
    grid.appendChild(del.section);

    var pay = card('Payment', 'payment');
    field(pay.dl, 'Amount', money(p.amount, cur), 'strong num');
    field(pay.dl, 'Goods', money(p.goods_total, cur), 'num');
    field(pay.dl, 'Delivery', money(p.delivery_cost, cur), 'num');
    field(pay.dl, 'Custom fee', money(p.custom_fee, cur), 'num');
    field(pay.dl, 'Provider', [str(p.provider), str(p.bank)].filter(Boolean).join(' \u00b7 '));
    field(pay.dl, 'Transaction', str(p.transaction), 'mono');
    if (p.request_id) field(pay.dl, 'Request id', str(p.request_id), 'mono');
    if (typeof p.payment_dt === 'number' && p.payment_dt > 0) {
      field(pay.dl, 'Paid', dateTime(new Date(p.payment_dt * 1000)));
    }
    grid.appendChild(pay.section);
    orderEl.appendChild(grid);

    // items
    var tbody = el('tbody');
    items.forEach(function (it) {
      tbody.appendChild(el('tr', null,
        el('td', null,
          el('span', { className: 'item-name' }, str(it.name)),
          it.brand ? el('span', { className: 'item-brand' }, str(it.brand)) : null),
        el('td', null, str(it.size)),
        el('td', { className: 'num' }, money(it.price, cur)),
        el('td', { className: 'num' }, it.sale ? '\u2212' + str(it.sale) + '%' : '\u2014'),
        el('td', { className: 'num strong' }, money(it.total_price, cur)),
        el('td', { className: 'mono muted' }, str(it.chrt_id)),
        el('td', { className: 'num' }, str(it.status))));
    });
    var tfoot = el('tfoot', null,
      totalRow('Goods total', money(p.goods_total, cur)),
      totalRow('Delivery', money(p.delivery_cost, cur)),
      p.custom_fee ? totalRow('Custom fee', money(p.custom_fee, cur)) : null,
      totalRow('Amount', money(p.amount, cur), 'grand'));
    var table = el('table', { className: 'items' },
      el('caption', null, items.length === 1 ? '1 item' : items.length + ' items'),
      el('thead', null, el('tr', null,
        el('th', { scope: 'col' }, 'Item'), el('th', { scope: 'col' }, 'Size'),
        el('th', { scope: 'col', className: 'num' }, 'Price'), el('th', { scope: 'col', className: 'num' }, 'Sale'),
        el('th', { scope: 'col', className: 'num' }, 'Total'), el('th', { scope: 'col' }, 'Chrt id'),
        el('th', { scope: 'col', className: 'num' }, 'Status'))),
      tbody, tfoot);
    orderEl.appendChild(el('section', { className: 'card items-card' }, el('div', { className: 'table-wrap' }, table)));

    message.hidden = true;
    intro.hidden = true;
    orderEl.hidden = false;
  }

  function totalRow(label, value, cls) {
    return el('tr', cls ? { className: cls } : null,
      el('th', { scope: 'row', colSpan: 4 }, label),
      el('td', { className: 'num strong' }, value),
      el('td', { colSpan: 2 }));
  }

  form.addEventListener('submit', function (ev) {
    ev.preventDefault();
    lookup(input.value, true);
  });
  $('example').addEventListener('click', function () {
    lookup($('example').textContent, true);
  });
  window.addEventListener('popstate', function () {
    lookup(new URLSearchParams(location.search).get('id') || '', false);
  });

  // ---- pipeline panel ---------------------------------------------------

  var pStatus = $('pipeline-status');
  var pBody = $('pipeline-body');
  var liveDot = $('live-dot');
  var prev = null; // {t, out: {stage: n}} of the previous poll, for throughput

  // stagesOf accepts the stages as an array of objects or an object keyed by name.
  function stagesOf(s) {
    var raw = s && (s.stages || s.Stages);
    if (Array.isArray(raw)) {
      return raw.filter(function (x) { return x && typeof x === 'object'; }).map(function (x, i) {
        return { name: str(x.stage || x.name || ('stage ' + (i + 1))), v: x };
      });
    }
    if (raw && typeof raw === 'object') {
      return Object.keys(raw).map(function (k) { return { name: k, v: raw[k] || {} }; });
    }
    return [];
  }

  function firstNumber(obj, keys) {
    for (var i = 0; i < keys.length; i++) {
      var v = obj ? obj[keys[i]] : undefined;
      if (typeof v === 'number') return v;
      if (v && typeof v === 'object') {
        var n = firstNumber(v, ['count', 'total', 'sum', 'value', 'produced']);
        if (n !== null) return n;
      }
    }
    return null;
  }

  // totalLag sums the lag whether it is a number, {partition: lag}, or [{lag}].
  function totalLag(s) {
    var v = s ? (s.lag !== undefined ? s.lag : (s.consumer_lag !== undefined ? s.consumer_lag : s.kafka_lag)) : undefined;
    if (typeof v === 'number') return v;
    if (v && typeof v === 'object') {
      if (typeof v.total === 'number') return v.total;
      var sum = 0, any = false;
      var vals = Array.isArray(v) ? v : Object.keys(v).map(function (k) { return v[k]; });
      vals.forEach(function (x) {
        var n = typeof x === 'number' ? x : (x && typeof x.lag === 'number' ? x.lag : null);
        if (n !== null) { sum += n; any = true; }
      });
      return any ? sum : null;
    }
    return null;
  }

  function stat(label, value, title) {
    return el('div', { className: 'stat', title: title || '' },
      el('span', { className: 'stat-value' }, value),
      el('span', { className: 'stat-label' }, label));
  }

  function renderPipeline(s) {
    var stages = stagesOf(s);
    var now = performance.now();
    clear(pBody);
    var state = s && typeof s.status === 'string' ? s.status : (s && typeof s.state === 'string' ? s.state : '');
    if (!stages.length) {
      pStatus.textContent = 'no data yet' + (state ? ' \u00b7 ' + state : '');
      liveDot.className = 'live-dot idle';
      prev = null;
      return;
    }
    pStatus.textContent = (state || 'running') + ' \u00b7 updated ' + new Date().toLocaleTimeString();
    liveDot.className = 'live-dot on';

    var summary = el('div', { className: 'stats' });
    var dlq = firstNumber(s, ['dlq', 'dlq_count', 'dlq_total', 'dead_letters']);
    var lag = totalLag(s);
    summary.appendChild(stat('DLQ', dlq === null ? '\u2014' : number(dlq), 'Messages sent to the dead-letter topic'));
    summary.appendChild(stat('Lag', lag === null ? '\u2014' : number(lag), 'Consumer lag (messages behind the log end)'));
    var coh = s && s.coherence;
    if (coh && typeof coh.cache === 'string') {
      var feedLag = coh.feed && typeof coh.feed.lag_seconds === 'number' && coh.feed.lag_seconds >= 0
        ? ' (change feed read ' + coh.feed.lag_seconds.toFixed(1) + ' s ago)' : '';
      var cs = stat('Cache', coh.cache, coh.cache === 'bypassed'
        ? 'This instance has not confirmed the change feed within ' + coh.bound_seconds + ' s: lookups read the database' + feedLag
        : 'Cached orders are kept coherent with the other instances' + feedLag);
      if (coh.cache === 'bypassed') cs.className += ' bad';
      summary.appendChild(cs);
    }
    pBody.appendChild(summary);

    var outs = {};
    var rows = el('tbody');
    stages.forEach(function (st) {
      var v = st.v;
      var out = typeof v.out === 'number' ? v.out : null;
      var rate = '\u2014';
      if (out !== null) {
        outs[st.name] = out;
        if (prev && typeof prev.out[st.name] === 'number' && now > prev.t) {
          var r = (out - prev.out[st.name]) / ((now - prev.t) / 1000);
          rate = number(Math.max(0, Math.round(r))) + '/s';
        }
      }
      var len = typeof v.queue_length === 'number' ? v.queue_length : null;
      var cap = typeof v.queue_capacity === 'number' ? v.queue_capacity : null;
      var fill = el('td', { className: 'queue' });
      if (len !== null && cap) {
        var pct = Math.min(100, Math.round(len * 100 / cap));
        var bar = el('span', { className: 'bar' + (pct >= 90 ? ' full' : '') }, el('span', { className: 'bar-fill' }));
        bar.firstChild.style.width = pct + '%';
        fill.appendChild(bar);
        fill.appendChild(el('span', { className: 'bar-label' }, number(len) + '/' + number(cap)));
      } else {
        fill.appendChild(document.createTextNode(len === null ? '\u2014' : number(len)));
      }
      var errs = (typeof v.errors === 'number' ? v.errors : 0) + (typeof v.rejected === 'number' ? v.rejected : 0);
      rows.appendChild(el('tr', v.done ? { className: 'done' } : null,
        el('th', { scope: 'row' }, st.name),
        el('td', { className: 'num' }, typeof v['in'] === 'number' ? number(v['in']) : '\u2014'),
        el('td', { className: 'num' }, out === null ? '\u2014' : number(out)),
        el('td', { className: 'num rate' }, rate),
        el('td', { className: 'num' + (errs ? ' bad' : '') }, number(errs)),
        fill));
    });
    pBody.appendChild(el('table', { className: 'stages' },
      el('thead', null, el('tr', null,
        el('th', { scope: 'col' }, 'Stage'), el('th', { scope: 'col', className: 'num' }, 'In'),
        el('th', { scope: 'col', className: 'num' }, 'Out'), el('th', { scope: 'col', className: 'num' }, 'Rate'),
        el('th', { scope: 'col', className: 'num', title: 'Errors and rejected messages' }, 'Err'),
        el('th', { scope: 'col' }, 'Queue'))),
      rows));
    prev = { t: now, out: outs };
  }

  var timer = null;
  function poll() {
    timer = null;
    if (document.hidden) { schedule(); return; }
    fetch('api/v1/pipeline/stats', { headers: { Accept: 'application/json' }, cache: 'no-store' })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(new Error('HTTP ' + r.status)); })
      .then(renderPipeline)
      .catch(function (err) {
        pStatus.textContent = 'stats unavailable (' + str(err && err.message) + ')';
        liveDot.className = 'live-dot off';
      })
      .then(schedule);
  }
  function schedule() {
    if (timer === null) timer = setTimeout(poll, POLL_MS);
  }
  document.addEventListener('visibilitychange', function () {
    if (!document.hidden && timer !== null) { clearTimeout(timer); timer = null; poll(); }
  });

  // ---- start ------------------------------------------------------------

  var initial = new URLSearchParams(location.search).get('id');
  if (initial) {
    history.replaceState({ id: initial }, '', location.href);
    lookup(initial, false);
  }
  poll();
})();
