// Keeps the console's tables live by polling its JSON API; the pages work
// without this script (reload to refresh).
(function () {
  'use strict';

  function text(value, fallback) {
    return value === null || value === undefined ? fallback : String(value);
  }

  function duration(secs) {
    if (secs === null || secs === undefined) return '–';
    if (secs < 60) return secs + 's';
    if (secs < 3600) return Math.floor(secs / 60) + 'm ' + (secs % 60) + 's';
    return Math.floor(secs / 3600) + 'h ' + Math.floor((secs % 3600) / 60) + 'm';
  }

  var resources = document.getElementById('resources');
  if (resources) {
    setInterval(function () {
      fetch(resources.getAttribute('data-live'), { headers: { accept: 'application/json' } })
        .then(function (answer) { return answer.json(); })
        .then(function (body) {
          body.resources.forEach(function (r) {
            var row = resources.querySelector('tr[data-instance="' + CSS.escape(r.instance_id) + '"]');
            if (!row) return;
            var set = function (field, value) {
              var cell = row.querySelector('[data-field="' + field + '"]');
              if (cell) cell.textContent = value;
            };
            set('pid', text(r.pid, '–'));
            set('state', r.state);
            row.querySelector('[data-field="state"]').className = 'state ' + r.state;
            set('uptime', duration(r.uptime_secs));
            set('restarts', text(r.restarts, '0'));
            set('cpu', r.cpu_percent === null ? '–' : r.cpu_percent.toFixed(1) + ' %');
            set('rss', r.rss_bytes === null ? '–' : (r.rss_bytes / 1e6).toFixed(1) + ' MB');
            set('ready', r.ready ? 'ready' : 'no');
            set('lease', text(r.lease, '–'));
          });
        })
        .catch(function () {});
    }, 2000);
  }

  var logs = document.getElementById('logs');
  if (logs) {
    var form = document.getElementById('log-filters');
    var body = logs.querySelector('tbody');
    setInterval(function () {
      var params = new URLSearchParams(new FormData(form));
      params.set('after', logs.getAttribute('data-after'));
      fetch(logs.getAttribute('data-live') + '?' + params.toString(), { headers: { accept: 'application/json' } })
        .then(function (answer) { return answer.json(); })
        .then(function (result) {
          result.lines.forEach(function (line) {
            var row = document.createElement('tr');
            row.className = 'level-' + line.level.toLowerCase();
            var fields = Object.keys(line.fields).map(function (k) {
              return k + '=' + (typeof line.fields[k] === 'string' ? line.fields[k] : JSON.stringify(line.fields[k]));
            }).join(' ');
            [line.time, line.process, line.level, line.message, fields].forEach(function (value, i) {
              var cell = document.createElement('td');
              if (i === 0) cell.className = 'time';
              if (i === 4) cell.className = 'fields';
              cell.textContent = value;
              row.appendChild(cell);
            });
            body.appendChild(row);
            logs.setAttribute('data-after', String(line.seq));
          });
          while (body.rows.length > 1000) body.deleteRow(0);
        })
        .catch(function () {});
    }, 1000);
  }
})();
