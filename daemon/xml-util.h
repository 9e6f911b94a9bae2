/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* libxml2 helpers shared by the two XML readers (domain-xml.c for the live
 * domain XML, vcpu-threads.c for libvirt's status files). */

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "macro.h"

static inline void xml_doc_freep(xmlDoc **d)
{
        if (*d)
                xmlFreeDoc(*d);
}
#define _cleanup_xml_doc_ _cleanup_(xml_doc_freep)

static inline void xml_freep(xmlChar **s)
{
        if (*s)
                xmlFree(*s);
}
#define _cleanup_xml_ _cleanup_(xml_freep)

/* The first child element of @parent named @name, or NULL. */
static inline xmlNode *xml_child(xmlNode *parent, const char *name)
{
        for (xmlNode *n = parent ? parent->children : NULL; n; n = n->next)
                if (n->type == XML_ELEMENT_NODE && xmlStrEqual(n->name, BAD_CAST name))
                        return n;
        return NULL;
}
