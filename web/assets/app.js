// Orders page: browse the newest orders, look one up by id, read the newest
// dead letters and watch the ingestion pipeline and its consumer group.
// Views are addressed by the query string (./, ?id=<uid>, ?view=dlq), so the
// back button and shared links work.
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
  var orderView = $('order-view');
  var listView = $('list-view');
  var dlqView = $('dlq-view');
  var statusEl = $('status');

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

  function lookup(rawID) {
    var id = rawID.trim();
    input.value = id;
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
    orderEl.hidden = false;
  }

  function totalRow(label, value, cls) {
    return el('tr', cls ? { className: cls } : null,
      el('th', { scope: 'row', colSpan: 4 }, label),
      el('td', { className: 'num strong' }, value),
      el('td', { colSpan: 2 }));
  }

  // ---- views and navigation -------------------------------------------

  function announce(text) {
    statusEl.textContent = text;
  }

  // route shows the view the address names: ?id=<uid> an order, ?view=dlq the
  // dead letters, anything else the newest orders. focus moves the keyboard
  // focus to the view's heading (after a click, not on the first load).
  function route(focus) {
    var params = new URLSearchParams(location.search);
    var id = params.get('id');
    var view = id !== null && id.trim() !== '' ? 'order' : (params.get('view') === 'dlq' ? 'dlq' : 'list');
    orderView.hidden = view !== 'order';
    listView.hidden = view !== 'list';
    dlqView.hidden = view !== 'dlq';
    $('nav-orders').setAttribute('aria-current', view === 'list' ? 'page' : 'false');
    $('nav-dlq').setAttribute('aria-current', view === 'dlq' ? 'page' : 'false');
    if (view === 'order') {
      lookup(id);
      if (focus) orderView.focus();
      return;
    }
    input.value = '';
    if (view === 'dlq') {
      document.title = 'Dead letters \u00b7 Orders';
      loadDLQ();
      if (focus) $('dlq-title').focus();
    } else {
      document.title = 'Orders';
      if (!list.loaded) loadList(false);
      if (focus) $('list-title').focus();
    }
  }

  // go navigates to url within the page (a new history entry) and shows it.
  function go(url) {
    history.pushState(null, '', url);
    route(true);
  }

  // A plain click on a link to this page is handled here; a click with a
  // modifier (new tab, new window) is left to the browser.
  document.addEventListener('click', function (ev) {
    if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
    var a = ev.target.closest ? ev.target.closest('a[href]') : null;
    if (!a || a.target || a.origin !== location.origin || a.pathname !== location.pathname) return;
    if (a.getAttribute('href').charAt(0) === '#') return; // in-page anchors (the skip link)
    ev.preventDefault();
    go(a.href);
  });

  form.addEventListener('submit', function (ev) {
    ev.preventDefault();
    var id = input.value.trim();
    go(id ? '?id=' + encodeURIComponent(id) : './');
  });
  window.addEventListener('popstate', function () { route(false); });

  // ---- newest orders ----------------------------------------------------

  var LIST_PAGE = 20;
  var list = { loaded: false, cursor: '', busy: false };
  var listRows = $('list-rows');
  var listStatus = $('list-status');
  var loadMore = $('load-more');

  function itemCount(o) {
    return Array.isArray(o.items) ? o.items.length : 0;
  }

  function orderRow(o) {
    var p = o.payment || {};
    var uid = str(o.order_uid);
    var created = new Date(o.date_created);
    var n = itemCount(o);
    return el('tr', null,
      el('th', { scope: 'row' }, el('a', { href: '?id=' + encodeURIComponent(uid), className: 'mono' }, uid)),
      el('td', { title: str(o.date_created) }, dateTime(created) || str(o.date_created)),
      el('td', { className: 'mono' }, str(o.customer_id)),
      el('td', { className: 'mono' }, str(o.track_number)),
      el('td', { className: 'num' }, number(n)),
      el('td', { className: 'num strong' }, money(p.amount, str(p.currency))));
  }

  // loadList fetches the first page (more: the next page) and appends its rows.
  function loadList(more) {
    if (list.busy) return;
    list.busy = true;
    loadMore.disabled = true;
    listStatus.textContent = 'Loading\u2026';
    var url = 'api/v1/orders?limit=' + LIST_PAGE + (more && list.cursor ? '&cursor=' + encodeURIComponent(list.cursor) : '');
    fetch(url, { headers: { Accept: 'application/json' }, cache: 'no-store' })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (body) { return { resp: r, body: body }; });
      })
      .then(function (r) {
        if (!r.resp.ok) {
          throw new Error((r.body && r.body.error ? str(r.body.error) : 'HTTP error') + ' (HTTP ' + r.resp.status + ')');
        }
        var orders = Array.isArray(r.body.orders) ? r.body.orders : [];
        if (!more) clear(listRows);
        var firstNew = null;
        orders.forEach(function (o) {
          if (!o || typeof o !== 'object') return;
          var row = orderRow(o);
          if (!firstNew) firstNew = row;
          listRows.appendChild(row);
        });
        list.loaded = true;
        list.cursor = str(r.body.next_cursor);
        var shown = listRows.rows.length;
        loadMore.hidden = !list.cursor;
        if (!shown) {
          listStatus.textContent = 'No orders yet: they show up here as soon as they are ingested.';
        } else {
          listStatus.textContent = number(shown) + (shown === 1 ? ' order shown' : ' orders shown') +
            (list.cursor ? '' : ' \u00b7 that is all of them');
        }
        if (more) {
          announce(number(orders.length) + ' more orders loaded, ' + number(shown) + ' shown');
          // The button goes away after the last page: keep the keyboard user in
          // the list, on the first order just loaded.
          if (loadMore.hidden && firstNew) firstNew.querySelector('a').focus();
        }
      })
      .catch(function (err) {
        listStatus.textContent = 'The orders could not be loaded: ' + str(err && err.message);
        announce(listStatus.textContent);
      })
      .then(function () {
        list.busy = false;
        loadMore.disabled = false;
      });
  }

  loadMore.addEventListener('click', function () { loadList(true); });
  $('list-refresh').addEventListener('click', function () {
    list.cursor = '';
    loadList(false);
  });

  // ---- dead letters -----------------------------------------------------

  var DLQ_LIMIT = 50;
  var token = ''; // kept in memory only: never stored
  // dlqSeq numbers the reads: only the answer of the newest one is shown (a
  // read started before the token changed is aborted and its answer ignored).
  var dlqSeq = 0;
  var dlqAbort = null;
  var dlqStatus = $('dlq-status');
  var dlqSummary = $('dlq-summary');
  var dlqTable = $('dlq-table');
  var dlqRows = $('dlq-rows');
  var tokenInput = $('token');
  var tokenForget = $('token-forget');

  function source(l) {
    if (!l.source_topic) return '\u2014';
    var s = str(l.source_topic);
    if (typeof l.source_partition === 'number') s += ' / ' + l.source_partition;
    if (typeof l.source_offset === 'number') s += ' @ ' + l.source_offset;
    return s;
  }

  function letterRow(l, values) {
    var hs = Array.isArray(l.headers) ? l.headers : [];
    var dl = el('dl', { className: 'headers' });
    hs.forEach(function (h) {
      dl.appendChild(el('dt', null, str(h && h.key)));
      dl.appendChild(el('dd', null, str(h && h.value)));
    });
    var details = el('details', null,
      el('summary', null, hs.length + (hs.length === 1 ? ' header' : ' headers') + ' \u00b7 ' + number(l.value_bytes) + ' bytes'),
      dl,
      values ? null : el('p', { className: 'muted' }, 'The original headers are shown only with the API token.'));
    var cell = el('td', { className: 'letter-details' }, details);
    if (values && typeof l.value === 'string') {
      if (l.value !== '' || !l.value_cut) cell.appendChild(el('pre', { className: 'value' }, l.value));
      if (l.value_cut) {
        cell.appendChild(el('p', { className: 'muted cut' }, l.value === ''
          ? 'Value not kept (' + number(l.value_bytes) + ' bytes): a read keeps at most 4 MiB of values, the newest letters first.'
          : 'The first 64 KiB of ' + number(l.value_bytes) + ' bytes.'));
      }
    }
    var t = new Date(l.time);
    return el('tr', null,
      el('td', { title: str(l.time) }, dateTime(t) || str(l.time),
        el('span', { className: 'pos muted' }, 'p' + str(l.partition) + ' @ ' + str(l.offset))),
      el('td', null, el('span', { className: 'chip class-chip' }, str(l.class) || '\u2014')),
      el('td', { className: 'reason' }, str(l.error)),
      el('td', { className: 'mono' }, source(l)),
      el('td', { className: 'mono' }, str(l.key)),
      cell);
  }

  // renderDLQ shows the answer of a read sent with the token sent ('' for none).
  function renderDLQ(body, sent) {
    var letters = Array.isArray(body.letters) ? body.letters : [];
    var byClass = body.by_class && typeof body.by_class === 'object' ? body.by_class : {};
    clear(dlqSummary);
    var stats = el('div', { className: 'stats wide' },
      stat('in the topic', number(body.total), 'Records in the dead-letter topic ' + str(body.topic) + ' (offsets, transaction markers included)'),
      stat('shown', number(letters.length), 'The newest letters, newest first'));
    dlqSummary.appendChild(stats);
    var classes = Object.keys(byClass).sort();
    var counts = el('table', { className: 'class-counts' },
      el('caption', null, 'By class (letters shown)'),
      el('thead', null, el('tr', null, el('th', { scope: 'col' }, 'Class'), el('th', { scope: 'col', className: 'num' }, 'Letters'))));
    var cb = el('tbody');
    classes.forEach(function (c) {
      cb.appendChild(el('tr', null, el('th', { scope: 'row' }, c || '(none)'), el('td', { className: 'num' }, number(byClass[c]))));
    });
    counts.appendChild(cb);
    if (classes.length) dlqSummary.appendChild(counts);

    clear(dlqRows);
    letters.forEach(function (l) {
      if (l && typeof l === 'object') dlqRows.appendChild(letterRow(l, body.values === true));
    });
    dlqTable.hidden = letters.length === 0;
    var note;
    if (!letters.length) note = 'No dead letters: every message so far was stored.';
    else if (body.values === true) note = 'Values are shown (API token accepted).';
    else if (sent) note = 'Values are hidden: the token was not accepted.';
    else note = 'Values are hidden: enter the API token to see them.';
    dlqStatus.textContent = note + ' Read at ' + new Date().toLocaleTimeString() + '.';
    announce(number(letters.length) + ' dead letters shown. ' + note);
  }

  // loadDLQ reads the dead letters with the current token; a read still in
  // flight is aborted, and only the newest read's answer is shown.
  function loadDLQ() {
    var seq = ++dlqSeq;
    var sent = token;
    if (dlqAbort) dlqAbort.abort();
    dlqAbort = typeof AbortController === 'function' ? new AbortController() : null;
    dlqStatus.textContent = 'Reading the dead-letter topic\u2026';
    var headers = { Accept: 'application/json' };
    if (sent) headers.Authorization = 'Bearer ' + sent;
    fetch('api/v1/dlq?limit=' + DLQ_LIMIT, { headers: headers, cache: 'no-store', signal: dlqAbort ? dlqAbort.signal : undefined })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (body) { return { resp: r, body: body }; });
      })
      .then(function (r) {
        if (seq !== dlqSeq) return; // a newer read (another token) is under way
        if (!r.resp.ok) {
          throw new Error((r.body && r.body.error ? str(r.body.error) : 'HTTP error') + ' (HTTP ' + r.resp.status + ')');
        }
        renderDLQ(r.body || {}, sent);
      })
      .catch(function (err) {
        if (seq !== dlqSeq) return;
        clear(dlqSummary);
        clear(dlqRows);
        dlqTable.hidden = true;
        dlqStatus.textContent = 'The dead letters could not be read: ' + str(err && err.message);
        announce(dlqStatus.textContent);
      });
  }

  $('dlq-refresh').addEventListener('click', loadDLQ);
  var tokenForm = $('token-form');
  tokenForm.addEventListener('submit', function (ev) {
    ev.preventDefault();
    token = tokenInput.value.trim();
    tokenInput.value = '';
    tokenForget.hidden = !token;
    loadDLQ();
  });
  tokenForget.addEventListener('click', function () {
    token = '';
    tokenForget.hidden = true;
    tokenInput.focus();
    loadDLQ();
  });
  // The form's fields start disabled (index.html) so that nothing can submit
  // it natively before this handler is attached.
  Array.prototype.forEach.call(tokenForm.querySelectorAll('input, button[type=submit]'), function (f) { f.disabled = false; });

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

  // ---- consumer group ---------------------------------------------------

  var groupStatus = $('group-status');
  var groupMembers = $('group-members');

  function partitionsText(parts) {
    if (!parts || typeof parts !== 'object') return '';
    return Object.keys(parts).sort().map(function (t) {
      var ps = Array.isArray(parts[t]) ? parts[t] : [];
      return t + ': ' + (ps.length ? ps.join(', ') : 'none');
    }).join('; ');
  }

  function renderGroup(g) {
    var members = Array.isArray(g.members) ? g.members : [];
    groupStatus.textContent = str(g.group_id) + ' · ' + (str(g.state) || 'unknown') + ' · ' +
      members.length + (members.length === 1 ? ' member' : ' members');
    clear(groupMembers);
    members.forEach(function (m) {
      if (!m || typeof m !== 'object') return;
      var name = str(m.instance_id) || str(m.client_id) || str(m.member_id);
      var parts = partitionsText(m.partitions);
      groupMembers.appendChild(el('li', { className: 'member' + (m.self ? ' self' : '') },
        el('span', { className: 'member-name mono' }, name),
        m.self ? el('span', { className: 'badge cache-hit' }, 'this instance') : null,
        // host and member_id are answered only with the API token
        el('span', { className: 'member-host muted' }, [str(m.client_id), str(m.host)].filter(Boolean).join(' · ')),
        el('span', { className: 'member-parts' }, (parts || 'no partitions') +
          (typeof m.lag === 'number' ? ' \u00b7 lag ' + number(m.lag) : ''))));
    });
  }

  function pollGroup() {
    var headers = { Accept: 'application/json' };
    if (token) headers.Authorization = 'Bearer ' + token;
    return fetch('api/v1/pipeline/group', { headers: headers, cache: 'no-store' })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (body) { return { resp: r, body: body }; });
      })
      .then(function (r) {
        if (!r.resp.ok) throw new Error((r.body && r.body.error ? str(r.body.error) : 'HTTP ' + r.resp.status));
        renderGroup(r.body || {});
      })
      .catch(function (err) {
        clear(groupMembers);
        groupStatus.textContent = 'group unavailable (' + str(err && err.message) + ')';
      });
  }

  var GROUP_EVERY = 5; // the group changes rarely: every 5th poll (10 s)
  var polls = 0;
  var timer = null;
  function poll() {
    timer = null;
    if (document.hidden) { schedule(); return; }
    if (polls++ % GROUP_EVERY === 0) pollGroup();
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

  route(false);
  poll();
})();
