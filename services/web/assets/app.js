// The live notifications badge: the header's "Notifications N" link counts
// up as notifications arrive over Server-Sent Events. Pages work without it.
(function () {
  'use strict';
  var badge = document.querySelector('a[data-live]');
  if (!badge || !window.EventSource) return;
  var count = badge.querySelector('.count');
  var source = new EventSource(badge.getAttribute('data-live'));
  source.addEventListener('notification', function () {
    var next = (parseInt(count.textContent, 10) || 0) + 1;
    count.textContent = String(next);
    badge.classList.add('unread');
  });
})();
