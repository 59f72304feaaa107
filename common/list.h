/* list: the one intrusive doubly linked list (the Linux kernel's list_head,
 * cut down). A struct that lives on a list embeds a `struct list_node`;
 * the list's owner keeps a `struct list_node` head. No allocation: linking
 * and unlinking never fail, and unlinking needs only the node.
 *
 *   struct list_node conns;            list_init(&conns);
 *   struct conn { struct list_node link; ... };
 *   list_add_tail(&conns, &c->link);    list_del(&c->link);
 *   list_for_each_safe(n, next, &conns) { struct conn *c = list_entry(n, struct conn, link); }
 *
 * A node that is on no list is self-linked (list_init or list_del), so
 * list_del is idempotent and list_linked() says whether it is on one. */
#ifndef CINCH_LIST_H
#define CINCH_LIST_H

#include <stddef.h>

struct list_node {
	struct list_node *next, *prev;
};

#define list_entry(node, type, member) ((type *)((char *)(node)-offsetof(type, member)))
/* Safe against unlinking `pos` inside the body (not `next`). */
#define list_for_each_safe(pos, n, head)                                                           \
	for ((pos) = (head)->next, (n) = (pos)->next; (pos) != (head);                             \
	     (pos) = (n), (n) = (pos)->next)

static inline void list_init(struct list_node *n)
{
	n->next = n->prev = n;
}

static inline int list_empty(const struct list_node *head)
{
	return head->next == head;
}

static inline int list_linked(const struct list_node *n)
{
	return n->next != n;
}

static inline void list_add_tail(struct list_node *head, struct list_node *n)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}

static inline void list_add_head(struct list_node *head, struct list_node *n)
{
	list_add_tail(head->next, n);
}

/* Unlinks n (a no-op when it is on no list) and leaves it self-linked. */
static inline void list_del(struct list_node *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	list_init(n);
}

#endif
