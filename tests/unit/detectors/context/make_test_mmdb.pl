#!/usr/bin/perl
# Writes the small MaxMind-format databases the context tests read, with documentation
# networks only (RFC 5737, RFC 3849) and private ASNs (RFC 5398):
#
#   perl make_test_mmdb.pl OUTDIR     -> OUTDIR/context_test.mmdb     (IPv6 tree, IPv4 inside)
#                                        OUTDIR/context_test_v4.mmdb  (IPv4 only)
#
# Needs MaxMind::DB::Writer (Debian: libmaxmind-db-writer-perl). ctest runs this as the
# fixture context_test_mmdb; tests/fuzz/make_seeds.py runs it for the geoip_fuzz seeds.
use strict;
use warnings;

use MaxMind::DB::Writer::Tree;

my $outdir = shift @ARGV or die "usage: $0 OUTDIR\n";

my %types = (
    country                        => 'map',
    registered_country             => 'map',
    iso_code                       => 'utf8_string',
    names                          => 'map',
    en                             => 'utf8_string',
    autonomous_system_number       => 'uint32',
    autonomous_system_organization => 'utf8_string',
);

sub country {
    my ($code) = @_;
    return { iso_code => $code, names => { en => "Country $code" } };
}

# network => record; each case is checked in tests/unit/detectors/context/geoip_test.cc.
my @records = (
    # Country and AS.
    [ '192.0.2.0/24', {
        country => country('US'),
        autonomous_system_number => 64496,
        autonomous_system_organization => 'Example Transit Inc.' } ],
    [ '198.51.100.0/24', {
        country => country('CN'),
        autonomous_system_number => 64497,
        autonomous_system_organization => "Example Cloud \x{4e91}" } ],
    # Only registered_country: the fallback.
    [ '203.0.113.0/25', { registered_country => country('JP') } ],
    # Only AS data.
    [ '203.0.113.128/25', {
        autonomous_system_number => 64499,
        autonomous_system_organization => 'Example ASN Only' } ],
    # Values the reader must drop: a three-letter code, a control character.
    [ '10.1.0.0/16', {
        country => country('XYZ'),
        autonomous_system_number => 64498,
        autonomous_system_organization => "Bad\nOrganisation" } ],
    # IPv6, with a more specific network inside.
    [ '2001:db8::/32', {
        country => country('DE'),
        autonomous_system_number => 64500,
        autonomous_system_organization => 'Example IPv6 Networks' } ],
    [ '2001:db8:1::/48', { country => country('NL') } ],
    # The far operator of the lab's captures (tests/golden/rdp_session, geo_replay.py).
    [ '198.18.9.0/24', {
        country => country('KP'),
        autonomous_system_number => 64501,
        autonomous_system_organization => 'Example Far Operator Net' } ],
);

sub write_db {
    my ($path, $ip_version, $type) = @_;
    my $tree = MaxMind::DB::Writer::Tree->new(
        ip_version               => $ip_version,
        record_size              => 24,
        database_type            => $type,
        languages                => ['en'],
        description              => { en => 'relaywatch context unit tests' },
        map_key_type_callback    => sub { $types{ $_[0] } or die "no type for $_[0]\n" },
        # Documentation networks are reserved; the writer drops them unless told not to.
        remove_reserved_networks => 0,
    );
    # A fixed build time keeps the output the same from run to run.
    $tree->_set_build_epoch(1700000000);
    for my $r (@records) {
        my ($network, $data) = @$r;
        next if $ip_version == 4 && $network =~ /:/;
        $tree->insert_network($network, $data);
    }
    open my $fh, '>:raw', $path or die "$path: $!\n";
    $tree->write_tree($fh);
    close $fh or die "$path: $!\n";
}

write_db("$outdir/context_test.mmdb", 6, 'relaywatch-Test-Country-ASN');
write_db("$outdir/context_test_v4.mmdb", 4, 'relaywatch-Test-Country-ASN-v4');
